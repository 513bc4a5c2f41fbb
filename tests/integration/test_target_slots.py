"""Each target's run limit is a Prefect global concurrency limit, on the real server: a run waits for a slot while
every slot is held, fails after its wait naming the limit, and a missing limit says that setup creates it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client

from infra.settings import OrchestrationSettings
from infra.target_slots import TargetSlotError, ensure_limit, limit_name, target_slot
from stroppy_domain.model import Target

pytestmark = [pytest.mark.timeout(120)]

# No run of the local stack uses this target's limit, so holding its only slot here starves no other test.
TARGET = Target.YANDEX_CLOUD


@pytest.fixture
def one_slot() -> Iterator[None]:
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(limit_name(TARGET), 1)
    yield
    ensure_limit(TARGET, OrchestrationSettings().target_run_limit(TARGET))


def test_a_second_holder_waits_out_its_bound_and_gets_the_slot_once_it_is_given_back(one_slot: None) -> None:
    with target_slot(TARGET, wait_s=10):
        started = time.monotonic()
        with pytest.raises(TargetSlotError, match=f"{limit_name(TARGET)} stayed taken for 2 s"), target_slot(TARGET, 2):
            pytest.fail("two holders of a one-slot limit")
        assert time.monotonic() - started >= 2
    with target_slot(TARGET, wait_s=10), get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name(TARGET)).active_slots == 1
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name(TARGET)).active_slots == 0


def test_an_error_inside_the_holder_passes_through_and_gives_the_slot_back(one_slot: None) -> None:
    with pytest.raises(TimeoutError, match="a step's own timeout"), target_slot(TARGET, wait_s=10):
        raise TimeoutError("a step's own timeout")
    with target_slot(TARGET, wait_s=2):
        pass


def test_setup_creates_a_missing_limit_and_leaves_a_current_one_alone(one_slot: None) -> None:
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(limit_name(TARGET))
    with pytest.raises(TargetSlotError, match="stroppy-flows setup"), target_slot(TARGET, wait_s=2):
        pytest.fail("a slot of a limit that does not exist")
    assert ensure_limit(TARGET, 3) == "created"
    assert ensure_limit(TARGET, 3) == "unchanged"
    assert ensure_limit(TARGET, 4) == "updated"
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name(TARGET)).limit == 4
