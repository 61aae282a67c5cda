"""The Ray tests' shared cluster: one real local Ray per test session, on loopback only, stopped at the end.

``ray_cluster`` starts it once (``clicksam.server.scale.cluster.start_or_join``: node IP 127.0.0.1, the
dashboard off, the machine's 2 CPUs, token auth through the environment) and every Ray test uses it
(Serve apps and Ray Data alike: ``ray.init`` is already done, so code that reuses a running Ray joins it).
At the end of the session it shuts Serve and Ray down through their APIs and fails the session's last
test if any process of that Ray session is still running.

``ray_helpers.ray_listening_sockets`` lists the sockets the session's processes listen on, for the loopback
checks.
Without the ``ray`` extra every test here is skipped, saying so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from clicksam.server.scale.cluster import ClusterInfo, loopback_environment, shutdown, start_or_join

loopback_environment()  # before the first ``import ray`` of the session
pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install 'clicksam[ray]'")
pytest.importorskip("psutil", reason="the Ray tests need psutil (the dev extra)")

from ray_helpers import session_processes  # noqa: E402

#: CPUs of the test cluster: the machine's 2 (the CI box), so the tests size things as they will run
RAY_TEST_CPUS = 2


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[ClusterInfo]:
    """A local Ray (2 CPUs, loopback, no dashboard), started once per session; shut down and checked after."""
    start = time.perf_counter()
    info = start_or_join(None, num_cpus=RAY_TEST_CPUS)
    print(f"\nlocal Ray up in {time.perf_counter() - start:.1f} s at {info.address}")
    try:
        yield info
    finally:
        shutdown(info)
        if info.started_here:
            deadline = time.monotonic() + 30
            left = session_processes(info.session_dir)
            while left and time.monotonic() < deadline:
                time.sleep(0.5)
                left = session_processes(info.session_dir)
            assert not left, f"Ray processes left after shutdown: {[(p.pid, p.name()) for p in left]}"
