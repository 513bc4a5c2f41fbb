"""A live run's heartbeat: while the run's flow works, a thread renews what it holds at a fraction of its TTL (the
ledger, the subnet lease, the CPU lease) and writes the time into the ledger, where the reaper reads it.

So a run may outlive every TTL (a 24-hour load keeps its subnet), while a run whose master died stops beating: its
leases expire on their own and the reaper tears it down once the heartbeat is older than its grace, even though its
flow run still says RUNNING (stroppy_domain.reaping).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from flows.teardown import LEDGER_CPUS, LEDGER_SUBNET
from infra.connections import redis_client
from infra.cpu_leases import CapacityError, CpuLeases
from infra.ledger import RunLedger
from infra.reservations import ReservationNotHeld, SubnetReservations
from infra.settings import OrchestrationSettings
from stroppy_domain.model import Target
from stroppy_domain.settings import AddressSpace

if TYPE_CHECKING:
    import redis


def beat(run_id: str, settings: OrchestrationSettings) -> list[str]:
    """Renew the run's ledger, and the leases its ledger says it holds; returns what was renewed. A lease recorded
    but not taken yet (the ledger is written first) is skipped.

    Raises LedgerError, ReservationStoreUnavailable or ReservationError when Redis refuses or does not answer."""
    with redis_client(settings) as client:
        ledger = RunLedger(client, run_id)
        if not ledger.beat(settings.ledger_ttl_s):
            return []
        return ["ledger", *renew_leases(client, run_id, ledger.entries(), settings.reservation_ttl_s)]


def renew_leases(client: redis.Redis, run_id: str, entries: dict[str, Any], ttl_s: int) -> list[str]:
    """Extend the subnet and CPU leases that the ledger's `entries` say the run holds to `ttl_s` from now; returns
    which. Raises ReservationStoreUnavailable or ReservationError when Redis refuses or does not answer."""
    renewed = []
    subnet = entries.get(LEDGER_SUBNET)
    if subnet is not None:
        space = AddressSpace(base_cidr=subnet["base_cidr"], prefix=subnet["prefix"])
        try:
            SubnetReservations(client, Target(subnet["target"]), space).renew(run_id, ttl_s)
            renewed.append("subnet")
        except ReservationNotHeld:  # recorded, not leased yet (or released)
            pass
    cpus = entries.get(LEDGER_CPUS)
    if cpus is not None:
        try:
            CpuLeases(client, cpus["host"]).renew(run_id, ttl_s)
            renewed.append("cpus")
        except CapacityError:  # recorded, not granted yet (or released)
            pass
    return renewed


class RunHeartbeat:
    """`beat` every `heartbeat_interval_s` on a daemon thread, from `start` until `stop`. A beat that fails is logged
    and tried again at the next one: the TTLs are at least three beats long."""

    def __init__(self, run_id: str, settings: OrchestrationSettings, log: logging.Logger | Any) -> None:
        self._run_id = run_id
        self._settings = settings
        self._log = log
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    def start(self) -> RunHeartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating; waits for a beat under way (bounded by Redis's timeouts)."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stopped.wait(self._settings.heartbeat_interval_s):
            try:
                beat(self._run_id, self._settings)
            except Exception as error:  # whatever failed (Redis, the block's API), the next beat tries again
                self._log.warning("heartbeat of %s failed; trying again in %g s: %s", self._run_id,
                                  self._settings.heartbeat_interval_s, error)  # fmt: skip
