"""Start (or join) the Ray cluster clicksam runs on; a local one binds to and advertises 127.0.0.1 only.

Ray 2.60 needs three things done by hand for a local cluster to stay on loopback (found by running it
here; see also the project's pitfalls notes):

- ``ray.init(_node_ip_address="127.0.0.1")`` is not enough: Ray "resolves" a loopback node address to the
  machine's other interface address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (a documented Ray
  constant meaning "no multi-node cluster"). With it the GCS, raylet, workers and agents bind to and
  advertise 127.0.0.1; the dashboard stays off.
- Ray Serve 2.60 starts an inter-deployment gRPC server in every replica on ``[::]:0`` (all interfaces),
  hard-coded in ``ray.serve._private.replica``. :func:`bind_serve_replica_grpc_to_loopback`, called by a
  deployment's constructor (which runs before that server starts), makes it bind to the replica's own
  node address when that address is loopback; on a real cluster it does nothing.
- Local clusters get token authentication; the token is generated here and passed through the
  environment (``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN``, inherited by every Ray process), so nothing is written
  to ``~/.ray``. A second process joining this cluster needs the same two variables.

``reported_addresses`` lists the addresses Ray itself reports (node, GCS, raylet, Serve), for the
loopback checks of the tests and of ``clicksam serve --engine ray`` at start-up.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import sys
from dataclasses import dataclass
from typing import Any

from clicksam.errors import ClickSamError

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: Ray reads these when ``ray`` is first imported, and every Ray process inherits them
_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class RayNotInstalledError(ClickSamError):
    """The ``ray`` extra is missing."""


def import_ray() -> Any:
    """``import ray``, or an error naming the extra to install."""
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise RayNotInstalledError(
            f"the Ray engine needs the ray extra ({exc.name} is not installed): pip install 'clicksam[ray]'"
        ) from exc
    return ray


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster this process is connected to.

    Attributes:
        address: the GCS address (``host:port``).
        node_ip: this node's address as Ray advertises it.
        session_dir: the Ray session folder (its processes carry its name on their command lines).
        started_here: True when this process started the cluster (and so must stop it).
    """

    address: str
    node_ip: str
    session_dir: str
    started_here: bool


def loopback_environment() -> None:
    """Set the environment a local cluster on loopback needs (see the module docstring); idempotent.

    Best called before ``ray`` is first imported; when it already was, Ray's cached copies of these
    settings are refreshed.
    """
    os.environ.update(_LOOPBACK_ENV)
    if "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    if "ray" in sys.modules:  # imported before us: Ray already read the environment
        from ray._private import ray_constants
        from ray._private.authentication import authentication_token_setup as auth

        ray_constants.ENABLE_RAY_CLUSTER = False
        auth.Config.initialize("")
        auth.AuthenticationTokenLoader.instance().reset_cache()


def start_or_join(
    address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None
) -> ClusterInfo:
    """Connect this process to Ray: reuse a running ``ray.init``, join ``address``, or start a local cluster.

    Args:
        address: a running cluster (``host:port`` or ``ray://...``); None starts a local cluster on
            loopback with the dashboard off (``RAY_ADDRESS`` in the environment is ignored then, so a
            test never joins a cluster by accident).
        num_cpus: CPUs of a local cluster (None: the machine's).
        num_gpus: GPUs of a local cluster (None: Ray detects them).

    Raises:
        RayNotInstalledError: no ``clicksam[ray]``.
        ClickSamError: the local cluster did not come up on loopback.
    """
    if address is None:
        loopback_environment()
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        if address is None:
            os.environ.pop("RAY_ADDRESS", None)
            ray.init(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                _node_ip_address=LOOPBACK,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
            started = True
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    info = current_cluster(started_here=started)
    if address is None and not is_loopback(info.node_ip):
        raise ClickSamError(
            f"the local Ray cluster advertises {info.node_ip}, not {LOOPBACK}; stop it (ray stop) and retry"
        )
    logger.info("Ray %s at %s (node %s)", "started" if started else "joined", info.address, info.node_ip)
    return info


def current_cluster(*, started_here: bool = False) -> ClusterInfo:
    """The cluster this process is connected to (after ``ray.init``)."""
    ray = import_ray()
    node = ray._private.worker.global_worker.node
    return ClusterInfo(
        address=str(node.address_info["gcs_address"]),
        node_ip=str(node.node_ip_address),
        session_dir=str(node.address_info["session_dir"]),
        started_here=started_here,
    )


def shutdown(info: ClusterInfo) -> None:
    """Stop Serve and Ray through their APIs (a joined cluster keeps running; only this process leaves)."""
    ray = import_ray()
    if not ray.is_initialized():
        return
    if info.started_here:
        from ray import serve

        try:
            serve.shutdown()
        except Exception as exc:  # a cluster that is going away anyway: say so, do not fail the stop
            logger.warning("Serve did not shut down cleanly: %s", exc)
    ray.shutdown()


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also IPv4-mapped) and ``localhost``; ``ip:port`` and ``[ip]:port`` are
    split first."""
    host = host.strip()
    if host.startswith("["):
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def reported_addresses() -> dict[str, str]:
    """Every address Ray reports for this cluster, by where it was read; all loopback on a local cluster.

    Node entries (``ray.nodes()``: node manager address, node name), the GCS address, this node's IP,
    the dashboard URL (when one runs) and, when Serve runs, its HTTP proxies' and replicas' node addresses.
    """
    ray = import_ray()
    node = ray._private.worker.global_worker.node
    found: dict[str, str] = {
        "gcs_address": str(node.address_info["gcs_address"]),
        "node_ip_address": str(node.address_info["node_ip_address"]),
        "runtime_context.node_ip": str(ray.util.get_node_ip_address()),
    }
    webui = node.address_info.get("webui_url")
    if webui:
        found["webui_url"] = str(webui).split("//")[-1]
    for i, entry in enumerate(ray.nodes()):
        if entry.get("Alive"):
            found[f"node[{i}].NodeManagerAddress"] = str(entry["NodeManagerAddress"])
            found[f"node[{i}].NodeName"] = str(entry["NodeName"])
    found.update(_serve_addresses())
    return found


def _serve_addresses() -> dict[str, str]:
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return {}
    details: dict[str, Any] = client.get_serve_details()  # ServeInstanceDetails as a dict
    found = {"serve.http_options.host": str((details.get("http_options") or {}).get("host", ""))}
    for node_id, proxy in (details.get("proxies") or {}).items():
        found[f"serve.proxy[{node_id[:8]}].node_ip"] = str(proxy.get("node_ip"))
    for app_name, app in (details.get("applications") or {}).items():
        for dep_name, dep in (app.get("deployments") or {}).items():
            for replica in dep.get("replicas") or []:
                key = f"serve.{app_name}.{dep_name}[{replica.get('replica_id', '')[:8]}].node_ip"
                found[key] = str(replica.get("node_ip"))
    return found


def bind_serve_replica_grpc_to_loopback() -> None:
    """In a Serve replica on a loopback node, make its inter-deployment gRPC server bind to 127.0.0.1.

    Ray Serve 2.60 binds that server to ``[::]:0`` (``ray.serve._private.replica``, hard-coded); a replica
    whose node advertises loopback only needs it there. Call from the deployment's constructor, which runs
    before the server starts. Elsewhere (a node with a routable address) this does nothing.
    """
    ray = import_ray()
    if not is_loopback(ray.util.get_node_ip_address()):
        return
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "_clicksam_loopback", False):
        return

    def add_port(server: Any, address: str) -> int:
        if address.startswith("[::]:"):
            address = f"{LOOPBACK}:{address.rsplit(':', 1)[1]}"
        port: int = original(server, address)
        return port

    add_port._clicksam_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port
