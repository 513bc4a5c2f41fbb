"""Which errors a retry can fix, Prefect's retry condition built on it, and the one backoff every wait uses.

A task retries only what may go away by itself (a timeout, a refused connection, a server error); a bad image
name, a refused credential or an invalid input fails at once. Waits poll with capped exponential backoff and
jitter (tenacity), always bounded by a deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import tenacity

from stroppy_domain.errors import StroppyError

T = TypeVar("T")

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0


def is_retryable(error: BaseException) -> bool:
    """True when the same call may succeed later: the project's errors say so themselves; of the others, only
    transport failures (timeouts, refused or dropped connections) qualify."""
    if isinstance(error, StroppyError):
        return error.retryable
    if isinstance(error, OSError | httpx.TransportError):  # TimeoutError and ConnectionError are OSErrors
        return True
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code >= 500 or error.response.status_code == 429
    import redis  # noqa: PLC0415 - only to recognise its transport errors

    return isinstance(error, redis.ConnectionError | redis.TimeoutError)


def retry_transient(task: object, task_run: object, state: Any) -> bool:
    """Prefect's `retry_condition_fn`: retry a failed task only when its exception is retryable."""
    del task, task_run
    error = state.data
    return isinstance(error, BaseException) and is_retryable(error)


class WaitTimedOut(StroppyError):  # noqa: N818 - reads as the condition it reports
    """A bounded wait ended before its condition held; the message says what was awaited."""


def wait_for(
    check: Callable[[], T | None],
    timeout_s: float,
    what: str,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
) -> T:
    """Call `check` until it returns something other than None, backing off between calls, for at most
    `timeout_s`; raises WaitTimedOut naming `what`. Errors `check` raises go to the caller at once."""
    backoff = tenacity.wait_exponential_jitter(multiplier=first_delay_s, max=max_delay_s, jitter=first_delay_s)

    def until_deadline(state: tenacity.RetryCallState) -> float:
        # The last check falls on the deadline itself, never past it.
        return max(0.0, min(backoff(state), timeout_s - (state.seconds_since_start or 0.0)))

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda value: value is None),
        stop=tenacity.stop_after_delay(timeout_s),
        wait=until_deadline,
        reraise=True,
    )
    try:
        result = retrying(check)
    except tenacity.RetryError:
        raise WaitTimedOut(f"{what}: not done after {timeout_s:.0f} s") from None
    if result is None:
        raise WaitTimedOut(f"{what}: not done after {timeout_s:.0f} s")
    return result


def call_with_retries(call: Callable[[], T], attempts: int, max_delay_s: float = 10.0) -> T:
    """`call`, tried up to `attempts` times while its error is retryable, with backoff; the last error is raised."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_retryable),
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential_jitter(multiplier=1, max=max_delay_s),
        reraise=True,
    )
    return retrying(call)
