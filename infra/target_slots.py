"""How many runs of one target hold machines at once: one Prefect global concurrency limit per target.

Prefect keeps the count, across every suite and every master worker: a run takes a slot of
`stroppy-target-<target>` before it leases anything and gives it back after its teardown, so a burst of suites
queues in Prefect instead of overloading a host or a cloud quota. The slot is a lease the holding process renews;
when that process dies with its machine, the lease runs out and Prefect frees the slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from stroppy_domain.errors import StroppyError
from stroppy_domain.model import Target

SLOT_LEASE_S = 300
"""How long a slot outlives the process holding it: renewed while it lives, freed this long after it died."""


class TargetSlotError(StroppyError):
    """No slot of the target's limit could be had: the limit is missing, or every slot stayed taken."""


def limit_name(target: Target) -> str:
    return f"stroppy-target-{target.value}"


def ensure_limit(target: Target, limit: int) -> str:
    """Create or update the target's limit to `limit` slots; returns created, updated or unchanged."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.actions import (  # noqa: PLC0415
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415

    name = limit_name(target)
    with get_client(sync_client=True) as client:
        try:
            current = client.read_global_concurrency_limit_by_name(name).limit
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
            return "created"
        if current == limit:
            return "unchanged"
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=limit))
    return "updated"


@contextmanager
def target_slot(target: Target, wait_s: float) -> Iterator[None]:
    """Hold one slot of the target's limit while open, waiting at most `wait_s` for one.

    Raises TargetSlotError when the limit does not exist (`stroppy-flows setup` creates it) or no slot became free
    within `wait_s`."""
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError  # noqa: PLC0415
    from prefect.concurrency.sync import concurrency  # noqa: PLC0415

    name = limit_name(target)
    with ExitStack() as held:
        try:
            # A failed lease renewal (the API away for a while) must not end a run that goes on measuring: the slot
            # is only lost when the API stays away for a whole lease.
            held.enter_context(
                concurrency(
                    name, occupy=1, timeout_seconds=wait_s, lease_duration=SLOT_LEASE_S, strict=True,
                    raise_on_lease_renewal_failure=False,
                )
            )  # fmt: skip
        except ConcurrencySlotAcquisitionError as error:
            raise TargetSlotError(f"{target}: {error}; `stroppy-flows setup` creates the limit {name}") from None
        except TimeoutError:
            raise TargetSlotError(
                f"{target}: every slot of the concurrency limit {name} stayed taken for {wait_s:.0f} s "
                "(STROPPY_TARGET_RUN_LIMITS, STROPPY_TARGET_SLOT_WAIT_S)"
            ) from None
        yield
