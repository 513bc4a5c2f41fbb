"""The run's share of its target's host: the capacity step of `stroppy-test-run`, what its result says of it, and
which other runs loaded the host while it measured.

Where a target's machines share one host (Docker), a run leases host CPUs for its machines before it reserves
anything else (`infra.cpu_leases`), waiting while other runs hold them; the decision is `stroppy_domain.capacity`'s.
Around its load, a run records its load window (`infra.load_windows`), so every run can name the others whose load
overlapped its own on the same host.
"""

from __future__ import annotations

from contextlib import ExitStack

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.progress import bounded
from flows.teardown import LEDGER_CPUS
from infra.connections import redis_client
from infra.cpu_leases import CapacityError, CpuLeases, wait_for_cpus
from infra.ledger import RunLedger
from infra.load_windows import LoadWindows
from infra.retries import retry_transient
from infra.settings import OrchestrationSettings
from infra.target_slots import target_slot
from infra.targets.base import RunSpec, SharedHost
from stroppy_domain.bounds import RunBounds
from stroppy_domain.capacity import CpuGrant, IsolationFacts, isolation_facts, machine_demands, oversize_problem
from stroppy_domain.model import BenchmarkTest, Isolation, Target
from stroppy_domain.placement import lay_out

CAPACITY_POLL_S = 2.0
"""How often a waiting run asks again: one small Redis transaction, so a freed CPU is taken within seconds."""


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
def take_cpus(
    run_id: str,
    test: BenchmarkTest,
    target: Target,
    host: SharedHost | None,
    wait_s: float,
    settings: OrchestrationSettings,
) -> CpuGrant | None:
    """Ledger first, then the run's CPUs on `host`, the target's shared host, waited for while other runs hold
    them; no grant where every machine is its own host (no `host`).

    Raises CapacityTimeout when the CPUs did not become free within `wait_s`, CapacityError when the test can
    never fit the host, LedgerError when the ledger cannot be written, and ReservationStoreUnavailable when Redis
    does not answer."""
    if host is None:
        return None
    isolation = test.isolation or Isolation.EXCLUSIVE
    demands = machine_demands((machine.name, machine.hardware) for machine in lay_out(test).machines)
    too_large = oversize_problem(demands, isolation, host.capacity)
    if too_large:
        raise CapacityError(f"test {test.name} does not fit the {target} host: it {too_large}")
    log = get_run_logger()
    with redis_client(settings) as client:
        RunLedger(client, run_id).record(LEDGER_CPUS, {"host": host.key})
        leases = CpuLeases(client, host.key)
        grant = wait_for_cpus(
            lambda: leases.acquire(host.capacity, run_id, demands, isolation, settings.reservation_ttl_s),
            wait_s, CAPACITY_POLL_S, log.info,
        )  # fmt: skip
    log.info("%s CPUs: %s", grant.isolation, {name: grant.cpuset(name) for name in grant.cpus})
    return grant


def hold_capacity(
    slot: ExitStack,
    run_id: str,
    test: BenchmarkTest,
    target: Target,
    host: SharedHost | None,
    bounds: RunBounds,
    settings: OrchestrationSettings,
) -> CpuGrant | None:
    """A slot of the target's run limit, held in `slot` until the run's end, then CPUs of the target's shared `host`
    (`take_cpus`).

    Raises TargetSlotError when no slot could be had, and what `take_cpus` raises."""
    slot.enter_context(target_slot(target, bounds.target_slot_wait_s))
    return bounded(take_cpus, bounds.capacity)(run_id, test, target, host, bounds.capacity_wait_s, settings)


def held_to(run: RunSpec, grant: CpuGrant | None, host: SharedHost | None) -> IsolationFacts:
    """What the run's machines were held to on their host, for its result."""
    machines = [(machine.name, machine.hardware) for machine in run.plan.machines]
    return isolation_facts(grant, machines, host.unenforced if host else [])


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
def open_load_window(run_id: str, host: SharedHost | None, settings: OrchestrationSettings) -> None:
    """Record that the run's load starts now on `host` (None: its machines are their own hosts); a retry only moves
    the start. Raises ReservationStoreUnavailable when Redis does not answer."""
    with redis_client(settings) as client:
        LoadWindows(client).open(run_id, host.key if host else "")


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
def runs_beside(run_id: str, settings: OrchestrationSettings) -> list[str]:
    """End the run's load window and name the other runs whose load overlapped it on the same host.

    Raises ReservationStoreUnavailable when Redis does not answer."""
    with redis_client(settings) as client:
        return LoadWindows(client).close(run_id)
