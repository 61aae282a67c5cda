"""The shared local Ray stays on loopback: every address Ray reports, every socket its processes listen on."""

from __future__ import annotations

import pytest
from ray_helpers import ray_listening_sockets

from clicksam.server.scale.cluster import ClusterInfo, is_loopback, reported_addresses


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.0.0.1:6379") and is_loopback("[::1]:80")
    assert is_loopback("localhost") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("192.0.2.2") and not is_loopback("0.0.0.0") and not is_loopback("::")
    assert not is_loopback("10.0.0.1:6379") and not is_loopback("")


def test_every_address_ray_reports_is_loopback(ray_cluster: ClusterInfo) -> None:
    addresses = reported_addresses()
    assert addresses["node_ip_address"] == "127.0.0.1"
    assert any(key.startswith("node[") for key in addresses)
    assert "webui_url" not in addresses  # the dashboard is off
    assert {k: v for k, v in addresses.items() if not is_loopback(v)} == {}


@pytest.mark.slow
def test_ray_processes_listen_on_loopback_only(ray_cluster: ClusterInfo) -> None:
    import ray

    @ray.remote(num_cpus=0)
    class Probe:  # a worker process of its own, with its own gRPC server
        def node_ip(self) -> str:
            return str(ray.util.get_node_ip_address())

    probe = Probe.remote()  # type: ignore[attr-defined]
    assert ray.get(probe.node_ip.remote()) == "127.0.0.1"
    sockets = ray_listening_sockets(ray_cluster)
    assert len(sockets) >= 3, sockets  # GCS, raylet, the probe at least
    assert [s for s in sockets if not is_loopback(s[0])] == []
    ray.kill(probe)
