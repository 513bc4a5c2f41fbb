"""A bounded command's output summary: the secrets it was given never reach the log or the kept lines."""

from __future__ import annotations

import pytest

from infra.processes import MASK, OutputSummary


@pytest.mark.parametrize(
    ("secrets", "line", "shown"),
    [
        ((), "token abc", "token abc"),
        (("abc",), "token abc and abc", f"token {MASK} and {MASK}"),
        (("abc", "abcdef"), "key abcdef", f"key {MASK}"),
        (("",), "nothing to hide", "nothing to hide"),
    ],
)
def test_each_secret_is_masked_in_the_log_and_the_tail(secrets: tuple[str, ...], line: str, shown: str) -> None:
    logged: list[str] = []
    summary = OutputSummary(logged.append, secrets)
    summary.add(line)
    assert logged == [shown] and list(summary.tail) == [shown]
