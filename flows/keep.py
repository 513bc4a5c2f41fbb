"""A failed run kept for a look (`keep_on_failure`), the runs this master holds, and releasing one early.

A kept run's machines stay up: its ledger says until when (the reaper leaves it alone till then, and reaps it
after), and its subnet and CPU leases last as long. The database's password goes into a Secret block named in the
run's report, never into the report itself. `stroppy-flows runs` lists live and kept runs; `stroppy-flows release
RUN` tears a kept run down early.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect import Task, task
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel

from flows.errors import OperateError
from flows.heartbeat import renew_leases
from flows.teardown import LEDGER_FLOW_RUN, LEDGER_KEPT_SECRET, TeardownReport, tear_down
from infra.connections import redis_client
from infra.ledger import RunLedger, open_ledgers
from infra.retries import retry_transient
from infra.settings import OrchestrationSettings
from infra.targets.base import RunSpec
from stroppy_domain.reaping import FINAL_STATES
from stroppy_domain.reports import aligned

KEPT_SECRET_PREFIX = "stroppy-kept-"
LEDGER_MARGIN_S = 3600
"""How long a kept run's ledger outlives its keeping, so the reaper still finds it after."""


class KeptRun(BaseModel):
    run_id: str
    until: datetime
    host: str
    port: int
    user: str
    dbname: str
    password_block: str | None

    def how_to_connect(self) -> str:
        password = f"the password is in the Secret block {self.password_block}" if self.password_block else ""
        return (
            f"run {self.run_id} is kept until {self.until:%Y-%m-%d %H:%M} UTC: connect to {self.host}:{self.port} "
            f"database {self.dbname} as {self.user}" + (f"; {password}" if password else "")
            + f"; release it early with `stroppy-flows release {self.run_id}`"
        )  # fmt: skip


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
def teardown(run_id: str, settings: OrchestrationSettings) -> TeardownReport:
    """`tear_down` as a task: raises LedgerError, TargetError or ReservationError as it does."""
    return tear_down(run_id, settings)


def finish_run(
    run_id: str,
    planned: RunSpec | None,
    keep_s: float | None,
    teardown_task: Task[..., TeardownReport],
    settings: OrchestrationSettings,
    log: Any,
) -> None:
    """Tear the run down; a failed run whose test keeps failures (`keep_s`), once its machines were planned, is kept
    for a look instead, and torn down after all when it cannot be kept.

    Raises what `teardown_task` raises when the teardown fails."""
    if keep_s and planned is not None:
        try:
            log.warning(keep_run(planned, keep_s, settings).how_to_connect())
            return
        except Exception as error:  # a run that cannot be kept must not be left: tear it down as usual
            log.warning("run %s could not be kept, so it is torn down: %s", run_id, error)
    started = time.monotonic()
    report = teardown_task(run_id, settings)
    log.info("teardown in %.1f s: %s", time.monotonic() - started, report.model_dump())


def keep_run(run: RunSpec, keep_s: float, settings: OrchestrationSettings) -> KeptRun:
    """Keep the failed run's machines for `keep_s` (at most `keep_on_failure_max_s`) and say how to reach them.

    Raises LedgerError, ReservationStoreUnavailable or ReservationError when Redis refuses or does not answer."""
    keep_s = min(keep_s, settings.keep_on_failure_max_s)
    until = datetime.now(UTC) + timedelta(seconds=keep_s)
    connection = run.plan.connection
    block = f"{KEPT_SECRET_PREFIX}{run.run_id}" if connection.password is not None else None
    with redis_client(settings) as client:
        ledger = RunLedger(client, run.run_id)
        ledger.keep(until, int(keep_s) + LEDGER_MARGIN_S)
        renew_leases(client, run.run_id, ledger.entries(), int(keep_s) + LEDGER_MARGIN_S)
        if block is not None:
            ledger.record(LEDGER_KEPT_SECRET, block)  # ledger first: teardown deletes the block
    if block is not None and connection.password is not None:
        Secret(value=connection.password.get_secret_value()).save(block, overwrite=True)
    kept = KeptRun(
        run_id=run.run_id, until=until, host=connection.host, port=connection.port, user=connection.user,
        dbname=connection.dbname, password_block=block or connection.password_block,
    )  # fmt: skip
    create_markdown_artifact(
        key=f"kept-{run.run_id}", markdown=f"# Kept after its failure\n\n{kept.how_to_connect()}\n",
        description=f"{run.run_id}: kept until {until:%Y-%m-%d %H:%M} UTC",
    )  # fmt: skip
    return kept


def kept_until(run_id: str, settings: OrchestrationSettings) -> datetime | None:
    """Until when a failed run is kept; None when it is not (or holds nothing). Raises LedgerError when Redis does not
    answer."""
    with redis_client(settings) as client:
        return RunLedger(client, run_id).kept_until()


class LiveRun(BaseModel):
    run_id: str
    flow_state: str
    opened_at: datetime | None
    heartbeat_at: datetime | None
    kept_until: datetime | None


def live_runs(settings: OrchestrationSettings) -> list[LiveRun]:
    """Every run with an open ledger: running, kept, or left for the reaper. Raises LedgerError when Redis does not
    answer."""
    found = []
    with redis_client(settings) as client, get_client(sync_client=True) as prefect:
        for run_id in open_ledgers(client):
            ledger = RunLedger(client, run_id)
            flow_run_id = ledger.entries().get(LEDGER_FLOW_RUN)
            state = "-"
            if flow_run_id:
                try:
                    flow_run = prefect.read_flow_run(UUID(flow_run_id))
                    state = flow_run.state.type.value if flow_run.state else "-"
                except ObjectNotFound:
                    state = "GONE"
            found.append(
                LiveRun(
                    run_id=run_id,
                    flow_state=state,
                    opened_at=ledger.opened_at(),
                    heartbeat_at=ledger.heartbeat_at(),
                    kept_until=ledger.kept_until(),
                )
            )
    return found


def render_runs(runs: list[LiveRun]) -> str:
    def at(value: datetime | None) -> str:
        return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"

    rows: list[tuple[str, ...]] = [("RUN", "FLOW", "OPENED", "HEARTBEAT", "KEPT UNTIL")]
    rows += [(r.run_id, r.flow_state, at(r.opened_at), at(r.heartbeat_at), at(r.kept_until)) for r in runs]
    return "\n".join(aligned(rows)) if runs else "no runs"


def release_run(run_id: str, settings: OrchestrationSettings) -> TeardownReport:
    """Tear a run down now (its kept password block too).

    Raises OperateError when the run's flow is still going (cancel it instead) or it holds nothing, and what
    `tear_down` raises when the teardown fails."""
    listed = {run.run_id: run for run in live_runs(settings)}
    run = listed.get(run_id)
    if run is None:
        raise OperateError(f"no run {run_id} holds anything: `stroppy-flows runs` lists those that do")
    if run.kept_until is None and run.flow_state not in FINAL_STATES:
        raise OperateError(f"run {run_id} is still {run.flow_state}: cancel its flow run instead")
    return tear_down(run_id, settings)
