"""An edge agent's silence counts only while the Prefect API answered: one that could not poll a server that was
away (a restart) has not lost its machine."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from infra.edge_queues import agent_silence_s


@pytest.mark.parametrize(
    ("polled_ago_s", "answering_for_s", "silent_s"),
    [
        (None, 100, None),  # never polled: not judged here
        (3, 100, 3),
        (60, 100, 60),  # a lost machine
        (60, 5, 5),  # the API came back 5 s ago: the agent may not have polled it yet
        (2, 5, 2),
    ],
)
def test_silence_counts_from_the_later_of_the_last_poll_and_the_apis_return(
    polled_ago_s: float | None, answering_for_s: float, silent_s: float | None
) -> None:
    last_polled = None if polled_ago_s is None else datetime.now(UTC) - timedelta(seconds=polled_ago_s)
    found = agent_silence_s(last_polled, time.monotonic() - answering_for_s)
    assert found == pytest.approx(silent_s, abs=0.5) if silent_s is not None else found is None
