"""`stroppy-flows history TEST`: a test's runs per fingerprint, with where changes began, from a real local store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows.history_command import render, runs_by_fingerprint
from infra.history_store import LocalHistoryStore
from stroppy_domain.checks import Verdict
from stroppy_domain.history import HistoryRecord
from stroppy_domain.model import RegressionRule, Target

NIGHTLY = "0123456789abcdef"
OTHER = "fedcba9876543210"
TPS = RegressionRule(metric="tps", max_drop=5)


def seeded(root: Path) -> LocalHistoryStore:
    store = LocalHistoryStore(root)
    start = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    nightly = [1000, 1010, 990, 1005, 995, 1000, 900, 905, 895]
    for night, tps in enumerate(nightly):
        store.append(
            HistoryRecord(
                run_id=f"run-night-{night}", test="single", fingerprint=NIGHTLY, target=Target.DOCKER,
                started_at=start + timedelta(days=night), verdict=Verdict.PASSED, metrics={"tps": {"value": tps}},
            )
        )  # fmt: skip
    store.append(
        HistoryRecord(
            run_id="run-other-0", test="single", fingerprint=OTHER, target=Target.DOCKER, started_at=start,
            verdict=Verdict.FAILED, metrics={"transactions": {"count": 5}},
        )
    )  # fmt: skip
    return store


def test_runs_are_listed_per_fingerprint_with_where_the_change_began(tmp_path: Path) -> None:
    histories = runs_by_fingerprint(seeded(tmp_path), "single", TPS, 50)
    assert [item.fingerprint for item in histories] == [NIGHTLY, OTHER]
    nightly = histories[0].runs
    assert [row.run_id for row in nightly] == [f"run-night-{night}" for night in range(9)]
    assert [row.change for row in nightly if row.change] == ["regression -10.0%"]
    assert next(row for row in nightly if row.change).run_id == "run-night-6"
    (other,) = histories[1].runs
    assert (other.verdict, other.value, other.change) == ("FAILED", None, "")


def test_the_table_and_the_json_say_the_same(tmp_path: Path) -> None:
    histories = runs_by_fingerprint(seeded(tmp_path), "single", TPS, 3)
    table = render("single", TPS, histories, as_json=False)
    assert table.splitlines()[0] == f"fingerprint {NIGHTLY}: 3 run(s)"
    assert "STARTED" in table and "run-night-8" in table and "run-night-5" not in table
    document = json.loads(render("single", TPS, histories, as_json=True))
    assert document["metric"] == "tps value"
    assert [item["fingerprint"] for item in document["fingerprints"]] == [NIGHTLY, OTHER]
    assert render("absent", TPS, [], as_json=False) == "no runs of absent in the history"
