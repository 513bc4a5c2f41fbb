"""Teardown of one run from its ledger and its labels: usable from the run itself, its hooks, the suite and a reaper.

It depends on nothing a step returned: the ledger says which target, address space and queues the run used, and
the target finds its resources by the run's labels. Every part is idempotent, so calling it twice is harmless.
"""

from __future__ import annotations

import logging

from prefect.blocks.system import Secret
from pydantic import BaseModel, Field

from infra.connections import delete_block, redis_client
from infra.cpu_leases import CpuLeases
from infra.edge_queues import cancel_unfinished_flows, delete_queues
from infra.ledger import RunLedger
from infra.load_windows import LoadWindows
from infra.metrics_store import VictoriaMetrics
from infra.reservations import SubnetReservations
from infra.settings import OrchestrationSettings
from infra.targets import open_target
from stroppy_domain.model import Target
from stroppy_domain.settings import AddressSpace

LEDGER_TARGET = "target"
LEDGER_SUBNET = "subnet"
LEDGER_CPUS = "cpus"
LEDGER_QUEUES = "queues"
LEDGER_SCRAPE = "scrape"
LEDGER_KEPT_SECRET = "kept_secret"  # the Secret block with a kept run's password (flows.keep)
LEDGER_FLOW_RUN = "flow_run"  # not a resource: tells the reaper which flow run owns the ledger

logger = logging.getLogger("stroppy.teardown")


class TeardownReport(BaseModel):
    run_id: str
    removed: dict[str, int] = Field(default_factory=dict)
    released_subnet: str | None = None
    released_cpus: bool = False
    deleted_queues: int = 0
    cancelled_flows: int = 0
    unwatched_exporters: bool = False


def metrics_store(settings: OrchestrationSettings) -> VictoriaMetrics:
    return VictoriaMetrics(settings.metrics_url, settings.metrics_targets_dir)


def tear_down(run_id: str, settings: OrchestrationSettings | None = None) -> TeardownReport:
    """Destroy what the run's ledger names, release its subnet and CPUs, cancel its edge flows that have not ended
    and delete its queues, close the ledger.

    Raises the first error of a part that could not be done, and the ledger keeps that part for a retry: LedgerError
    when the ledger cannot be read or written, TargetError when the target cannot be opened or does not destroy
    the run's resources, ReservationError when the subnet cannot be released."""
    settings = settings or OrchestrationSettings()
    report = TeardownReport(run_id=run_id)
    with redis_client(settings) as client:
        ledger = RunLedger(client, run_id)
        entries = ledger.entries()
        if LEDGER_TARGET in entries:
            with open_target(Target(entries[LEDGER_TARGET]["name"]), settings) as backend:
                recorded, current = entries[LEDGER_TARGET].get("state"), backend.state_location(run_id)
                if recorded != current:
                    logger.warning(
                        "run %s: its state was recorded at %s but the target now keeps it at %s; only the label "
                        "sweep can find its resources", run_id, recorded, current,
                    )  # fmt: skip
                report.removed = backend.destroy(run_id).removed
            ledger.forget(LEDGER_TARGET)
        if LEDGER_SCRAPE in entries:
            report.unwatched_exporters = metrics_store(settings).remove_targets(run_id)
            ledger.forget(LEDGER_SCRAPE)
        if LEDGER_QUEUES in entries:
            report.cancelled_flows = cancel_unfinished_flows(run_id)
            report.deleted_queues = delete_queues(entries[LEDGER_QUEUES])
            ledger.forget(LEDGER_QUEUES)
        if LEDGER_SUBNET in entries:
            lease = entries[LEDGER_SUBNET]
            space = AddressSpace(base_cidr=lease["base_cidr"], prefix=lease["prefix"])
            report.released_subnet = SubnetReservations(client, Target(lease["target"]), space).release(run_id)
            ledger.forget(LEDGER_SUBNET)
        if LEDGER_CPUS in entries:
            report.released_cpus = CpuLeases(client, entries[LEDGER_CPUS]["host"]).release(run_id)
            ledger.forget(LEDGER_CPUS)
        if LEDGER_KEPT_SECRET in entries:
            delete_block(Secret, entries[LEDGER_KEPT_SECRET])
            ledger.forget(LEDGER_KEPT_SECRET)
        LoadWindows(client).close(run_id)  # a load that failed or was killed has ended too
        ledger.close()
    logger.info("run %s torn down: %s", run_id, report.model_dump())
    return report
