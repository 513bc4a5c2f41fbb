"""The history store in a local directory, and in S3 through prefect-aws against a local S3-compatible server (moto):
the same behaviour, the same keys."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import uuid4

import boto3
import pytest

from infra.history_store import HistoryStore, HistoryStoreError, LocalHistoryStore, S3HistoryStore
from stroppy_domain.checks import Verdict
from stroppy_domain.history import Distribution, HistoryRecord
from stroppy_domain.model import Target
from tests.integration.moto_s3 import standin_bucket

FP_A = "0123456789abcdef"
FP_B = "fedcba9876543210"
START = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)


def record(
    run_id: str = "run-0001", *, test: str = "tpcc", fp: str = FP_A, started: datetime = START, tps: float = 1000.0
) -> HistoryRecord:
    return HistoryRecord(
        run_id=run_id, test=test, fingerprint=fp, started_at=started, target=Target.DOCKER, verdict=Verdict.PASSED,
        metrics={"tps": {"median": tps}}, per_second={"tps": Distribution(median=tps, spread=12.5, samples=60)},
        versions={"postgres": "17.2"},
    )  # fmt: skip


@dataclass(frozen=True)
class Case:
    """A place to keep a history: `open` makes a new store over it (as a restarted process would), `base` is where
    its keys are, `put` writes raw bytes under a key behind the store's back."""

    open: Callable[[], HistoryStore]
    base: str
    put: Callable[[str, bytes], object]


def _put_file(root: Path, key: str, data: bytes) -> None:
    (root / key).parent.mkdir(parents=True, exist_ok=True)
    (root / key).write_bytes(data)


@pytest.fixture(params=["local", "s3"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    if request.param == "local":
        root = tmp_path / "history"
        return Case(
            open=lambda: LocalHistoryStore(root), base=str(root), put=lambda key, data: _put_file(root, key, data)
        )
    endpoint = request.getfixturevalue("s3_endpoint")
    name = f"history-{uuid4().hex[:12]}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="standin", aws_secret_access_key="standin-secret",
    )  # fmt: skip
    client.create_bucket(Bucket=name)
    return Case(
        open=lambda: S3HistoryStore(standin_bucket(endpoint, name, "nightly")),
        base=f"s3://{name}/nightly/history",
        put=lambda key, data: client.put_object(Bucket=name, Key=f"nightly/history/{key}", Body=data),
    )


def test_latest_gives_the_last_records_oldest_first_by_start_in_utc(case: Case) -> None:
    store = case.open()
    runs = [record(f"run-000{i}", started=START + timedelta(hours=i), tps=1000.0 + i) for i in range(5)]
    east = timezone(timedelta(hours=3))
    # 04:30 at UTC+3 is 01:30 UTC: the first run, though its local time is later than two of the others.
    earliest = record("run-early", started=datetime(2026, 1, 1, 4, 30, tzinfo=east))
    for run in [runs[3], runs[0], earliest, runs[4], runs[2], runs[1]]:
        store.append(run)
    store.append(record("run-other", fp=FP_B))
    reopened = case.open()
    assert reopened.latest(FP_A, 3) == runs[2:]
    assert reopened.latest(FP_A) == [earliest, *runs]
    assert reopened.latest(FP_B) == [record("run-other", fp=FP_B)]
    assert reopened.latest("00000000000000ff") == []


def test_append_twice_writes_one_record_and_says_where(case: Case) -> None:
    store = case.open()
    location = store.append(record())
    assert location == f"{case.base}/runs/{FP_A}/20260101T020000000000Z-run-0001.json"
    assert store.append(record()) == location
    assert store.latest(FP_A) == [record()]
    assert store.fingerprints("tpcc") == [FP_A]


def test_the_index_lists_tests_and_their_fingerprints(case: Case) -> None:
    store = case.open()
    store.append(record("run-0001", test="tpcc", fp=FP_A))
    store.append(record("run-0002", test="tpcc", fp=FP_B))
    store.append(record("run-0003", test="tpcc-small", fp=FP_A))
    store.append(record("run-0004", test="tpcc", fp=FP_A, started=START + timedelta(days=1)))
    assert store.tests() == ["tpcc", "tpcc-small"]
    assert store.fingerprints("tpcc") == [FP_A, FP_B]
    assert store.fingerprints("tpcc-small") == [FP_A]
    assert store.fingerprints("tpcb") == []


def test_an_empty_store_has_no_tests(case: Case) -> None:
    assert case.open().tests() == []


@pytest.mark.parametrize("body", [b"{not json", b'{"run_id": "run-0000"}'], ids=["not-json", "missing-fields"])
def test_a_malformed_record_is_reported_with_its_key_and_only_when_read(case: Case, body: bytes) -> None:
    store = case.open()
    store.append(record())
    key = f"runs/{FP_A}/20260101T000000000000Z-run-0000.json"
    case.put(key, body)
    assert store.latest(FP_A, 1) == [record()]
    with pytest.raises(HistoryStoreError, match=re.escape(f"{case.base}/{key} is not a history record")):
        store.latest(FP_A, 2)


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({"fp": "../../../etc/pass"}, "fingerprint '../../../etc/pass'"),
        ({"fp": "0123456789ABCDEF"}, "fingerprint '0123456789ABCDEF'"),
        ({"test": "../escape"}, "test name '../escape'"),
        ({"test": "tpcc/x"}, "test name 'tpcc/x'"),
        ({"run_id": "run-1/../../x"}, "run id 'run-1/../../x'"),
        ({"started": datetime(2026, 1, 1, 2, 0)}, "run-0001: started_at 2026-01-01T02:00:00 has no time zone"),
    ],
)
def test_a_record_that_cannot_be_keyed_is_refused_and_nothing_is_written(
    case: Case, changes: dict[str, Any], refused: str
) -> None:
    store = case.open()
    with pytest.raises(HistoryStoreError, match=re.escape(refused)) as raised:
        store.append(record(**changes))
    assert raised.value.retryable is False
    assert store.tests() == []


def test_bad_names_and_limits_are_refused_before_any_lookup(case: Case) -> None:
    store = case.open()
    with pytest.raises(HistoryStoreError, match=re.escape("fingerprint '../runs'")):
        store.latest("../runs")
    with pytest.raises(HistoryStoreError, match=re.escape("fingerprint '0123456789abcde'")):
        store.latest(FP_A[:-1])
    with pytest.raises(HistoryStoreError, match=re.escape("test name '..'")):
        store.fingerprints("..")
    with pytest.raises(HistoryStoreError, match="limit must be at least 1, got 0"):
        store.latest(FP_A, 0)


def test_local_store_names_the_path_it_could_not_write(tmp_path: Path) -> None:
    blocker = tmp_path / "history"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(HistoryStoreError, match=re.escape(f"cannot write {blocker}/runs/{FP_A}/")) as raised:
        LocalHistoryStore(blocker).append(record())
    assert raised.value.retryable is False


def test_s3_store_reports_an_absent_bucket_as_not_retryable(s3_endpoint: str) -> None:
    store = S3HistoryStore(standin_bucket(s3_endpoint, "absent"))
    with pytest.raises(HistoryStoreError, match=re.escape(f"cannot write s3://absent/history/runs/{FP_A}/")) as wrote:
        store.append(record())
    assert wrote.value.retryable is False
    with pytest.raises(HistoryStoreError, match=re.escape(f"cannot list s3://absent/history/runs/{FP_A}: ")) as listed:
        store.latest(FP_A)
    assert listed.value.retryable is False


def test_s3_store_reports_an_unreachable_endpoint_as_retryable() -> None:
    with socket.socket() as probe:  # a port nothing listens on: bound, then released
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {"retries": {"max_attempts": 1}, "connect_timeout": 2}
    store = S3HistoryStore(standin_bucket(f"http://127.0.0.1:{port}", "results", config=config), prefix="")
    with pytest.raises(HistoryStoreError, match=re.escape("cannot list s3://results/tests: ")) as raised:
        store.tests()
    assert raised.value.retryable is True
