"""Which errors a retry may fix, and the one bounded backoff every wait uses."""

from __future__ import annotations

import time

import httpx
import pytest
import redis

from infra.edge_queues import EdgeAgentsNotReady, EdgeFlowFailed, EdgeFlowTimedOut
from infra.retries import WaitTimedOut, call_with_retries, is_retryable, wait_for
from infra.targets.base import TargetError
from stroppy_domain.errors import InvalidSuiteError, PlanningError, StroppyError, TransientError

REQUEST = httpx.Request("GET", "http://127.0.0.1:1/")


def status_error(code: int) -> httpx.HTTPStatusError:
    return httpx.HTTPStatusError("status", request=REQUEST, response=httpx.Response(code, request=REQUEST))


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (TargetError("image not found"), False),
        (TargetError("the engine did not answer", retryable=True), True),
        (TransientError("overloaded"), True),
        (StroppyError("anything of ours"), False),
        (InvalidSuiteError([]), False),
        (PlanningError("tests[0]", "no room"), False),
        (EdgeAgentsNotReady("not polling"), False),
        (EdgeFlowFailed("ended FAILED"), False),
        (EdgeFlowTimedOut("did not finish"), True),
        (TimeoutError("timed out"), True),
        (ConnectionRefusedError("refused"), True),
        (httpx.ConnectError("refused", request=REQUEST), True),
        (status_error(503), True),
        (status_error(429), True),
        (status_error(404), False),
        (status_error(401), False),
        (redis.ConnectionError("down"), True),
        (redis.TimeoutError("slow"), True),
        (redis.ResponseError("WRONGTYPE"), False),
        (ValueError("bad value"), False),
        (KeyError("missing"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_only_errors_that_may_pass_are_retryable(error: BaseException, retryable: bool) -> None:
    assert is_retryable(error) is retryable


def test_every_error_of_the_project_descends_from_one_root() -> None:
    from infra.edge_queues import EdgeAgentsNotReady  # noqa: PLC0415
    from infra.images import ImageBuildError  # noqa: PLC0415
    from infra.ledger import LedgerError  # noqa: PLC0415
    from infra.metrics_store import MetricsStoreError  # noqa: PLC0415
    from infra.reservations import ReservationError  # noqa: PLC0415
    from infra.result_storage import ResultStorageError  # noqa: PLC0415
    from infra.stroppy_release import ReleaseError  # noqa: PLC0415
    from infra.terraform import TerraformError  # noqa: PLC0415
    from infra.yandex_cloud import YandexCloudError  # noqa: PLC0415
    from stroppy_domain.load import LoadError  # noqa: PLC0415
    from stroppy_domain.results import SummaryError  # noqa: PLC0415
    from stroppy_domain.subnets import SubnetError  # noqa: PLC0415
    from stroppy_domain.timeseries import LoadSeriesError  # noqa: PLC0415

    families = [
        EdgeAgentsNotReady, ImageBuildError, LedgerError, MetricsStoreError, ReservationError, ResultStorageError,
        ReleaseError, TerraformError, YandexCloudError, LoadError, SummaryError, SubnetError, LoadSeriesError,
        TargetError, InvalidSuiteError, PlanningError,
    ]  # fmt: skip
    assert [family.__name__ for family in families if not issubclass(family, StroppyError)] == []


def test_a_wait_returns_as_soon_as_its_condition_holds() -> None:
    calls = []

    def third_time() -> str | None:
        calls.append(1)
        return "ready" if len(calls) == 3 else None

    assert wait_for(third_time, timeout_s=10, what="x", first_delay_s=0.01, max_delay_s=0.02) == "ready"
    assert len(calls) == 3


def test_a_wait_ends_at_its_bound_naming_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimedOut, match="the agents: not done after 1 s"):
        wait_for(lambda: None, timeout_s=1, what="the agents", first_delay_s=0.05, max_delay_s=0.2)
    assert 0.9 <= time.monotonic() - started < 2.0


def test_a_wait_does_not_swallow_what_its_check_raises() -> None:
    def broken() -> None:
        raise TargetError("engine gone")

    with pytest.raises(TargetError, match="engine gone"):
        wait_for(broken, timeout_s=5, what="x", first_delay_s=0.01)


def test_calls_are_retried_only_while_their_error_is_retryable() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise TargetError("not yet", retryable=True)
        return "done"

    assert call_with_retries(flaky, attempts=3, max_delay_s=0.01) == "done"
    assert len(attempts) == 3

    refused: list[int] = []

    def refuses() -> str:
        refused.append(1)
        raise TargetError("bad credentials")

    with pytest.raises(TargetError, match="bad credentials"):
        call_with_retries(refuses, attempts=5, max_delay_s=0.01)
    assert len(refused) == 1
