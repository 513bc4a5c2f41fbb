"""Load windows against the real Redis started by scripts/services.sh."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from blocks.redis import RedisConnection
from infra import load_windows
from infra.load_windows import KEY, LoadWindows
from infra.reservations import ReservationError, ReservationStoreUnavailable
from tests.integration.redis_store import emptied_redis

pytestmark = pytest.mark.redis

HOST = "docker:engine-1"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    with emptied_redis(KEY) as connection:
        connection.delete(KEY)
        yield connection


def test_a_run_names_every_load_that_overlapped_its_own(client: redis.Redis) -> None:
    windows = LoadWindows(client)
    windows.open("run-a", HOST)
    windows.open("run-inside", HOST)
    windows.open("run-elsewhere", "docker:engine-2")
    assert windows.close("run-inside") == ["run-a"]  # still going; run-elsewhere loads another host
    windows.open("run-late", HOST)
    assert windows.close("run-a") == ["run-inside", "run-late"]
    assert windows.close("run-a") == ["run-inside", "run-late"], "a second close keeps the first end"
    time.sleep(0.01)
    windows.open("run-after", HOST)
    assert windows.close("run-after") == ["run-late"], "run-a and run-inside had ended before it started"


def test_runs_on_their_own_hosts_overlap_nothing(client: redis.Redis) -> None:
    windows = LoadWindows(client)
    windows.open("run-vm-a", "")
    windows.open("run-vm-b", "")
    assert windows.close("run-vm-a") == []


def test_closing_a_window_never_opened_names_nothing(client: redis.Redis) -> None:
    windows = LoadWindows(client)
    windows.open("run-a", HOST)
    assert windows.close("run-never") == []


def test_old_windows_are_dropped_when_a_load_starts(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    windows = LoadWindows(client)
    windows.open("run-ended", HOST)
    windows.close("run-ended")
    windows.open("run-died", HOST)
    monkeypatch.setattr(load_windows, "KEPT_AFTER_END_MS", 0)
    monkeypatch.setattr(load_windows, "LONGEST_OPEN_MS", 0)
    time.sleep(0.01)
    windows.open("run-new", HOST)
    assert sorted(key.decode() for key in client.hkeys(KEY)) == ["run-new"]


def test_a_malformed_window_is_reported(client: redis.Redis) -> None:
    client.hset(KEY, "run-bad", "{not json")
    with pytest.raises(ReservationError, match="malformed"):
        LoadWindows(client).close("run-a")


def test_redis_down_is_reported() -> None:
    unreachable = RedisConnection(url="redis://127.0.0.1:1/0", timeout_s=1).get_client()
    with pytest.raises(ReservationStoreUnavailable, match="cannot reach the load windows"):
        LoadWindows(unreachable).open("run-a", HOST)
