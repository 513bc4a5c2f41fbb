"""Redis as the stack and compose configure it (infra/redis/redis.conf) keeps every lease and ledger across a crash:
a private redis-server is killed with SIGKILL mid-run and started again on the same directory."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from infra.cpu_leases import CpuLeases
from infra.ledger import RunLedger, open_ledgers
from infra.reservations import SubnetReservations
from stroppy_domain.capacity import CpuGrant, HostCapacity, MachineDemand
from stroppy_domain.model import Isolation, Target
from stroppy_domain.settings import AddressSpace
from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

CONFIG = REPO / "infra" / "redis" / "redis.conf"
STARTUP_S = 20


@contextmanager
def _redis_server(directory: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """redis-server with the stack's configuration on `directory`, until the block ends (or it is killed)."""
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", str(CONFIG), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(directory), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port, socket_timeout=2)
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        client.close()
        yield server
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=STARTUP_S)


def test_a_killed_redis_comes_back_with_every_lease_and_ledger(tmp_path: Path) -> None:
    port = free_port()
    space = AddressSpace(base_cidr="10.60.0.0/16", prefix=24)
    with _redis_server(tmp_path, port) as server:
        client = redis.Redis(port=port, socket_timeout=5)
        subnet = SubnetReservations(client, Target.DOCKER, space).reserve("run-durable", machines=2)
        ledger = RunLedger(client, "run-durable")
        ledger.open(ttl_s=3600)
        ledger.record("network", "stroppy-run-durable")
        cpus = CpuLeases(client, "docker:test-engine")
        demand = [MachineDemand(name="db", cores=1, memory_gb=1)]
        granted = cpus.acquire(HostCapacity(cpus=2, memory_gb=8), "run-durable", demand, Isolation.EXCLUSIVE, 3600)
        assert isinstance(granted, CpuGrant), granted
        ttls = {key: client.ttl(key) for key in client.keys("*")}
        client.close()
        server.send_signal(signal.SIGKILL)  # a crash: nothing is flushed on the way out
        server.wait(timeout=STARTUP_S)
    with _redis_server(tmp_path, port):
        client = redis.Redis(port=port, socket_timeout=5)
        reservations = SubnetReservations(client, Target.DOCKER, space).list()
        assert [(r.run_id, r.subnet) for r in reservations] == [("run-durable", subnet.subnet)]
        assert open_ledgers(client) == ["run-durable"]
        assert RunLedger(client, "run-durable").entries() == {"network": "stroppy-run-durable"}
        assert client.hexists(cpus.key, "run-durable"), granted
        for key, ttl in ttls.items():  # expiries survive too: nothing that would expire lives forever after a restart
            assert (0 < client.ttl(key) <= ttl) if ttl > 0 else client.ttl(key) == ttl, key
        client.close()
