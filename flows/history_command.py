"""`stroppy-flows history TEST`: a test's runs from the history store, per fingerprint, with where changes began."""

from __future__ import annotations

import json

from pydantic import Field

from flows.reporting import history_store
from infra.history_store import HistoryStore
from infra.settings import OrchestrationSettings
from stroppy_domain.history import HistoryRecord
from stroppy_domain.model import Model, RegressionRule
from stroppy_domain.regression import HISTORY_RUNS, change_points, history_of
from stroppy_domain.reports import against_history, aligned


class HistoryRow(Model):
    run_id: str
    started_at: str
    verdict: str
    value: float | None
    change: str = Field(description="Where a change began at this run: its verdict and size.")


class FingerprintHistory(Model):
    fingerprint: str
    runs: list[HistoryRow]


def runs_by_fingerprint(store: HistoryStore, test: str, rule: RegressionRule, limit: int) -> list[FingerprintHistory]:
    """The last `limit` runs of each fingerprint of `test`, oldest first, marked where `rule` finds a change began.

    Raises HistoryStoreError when the store cannot be listed or read."""
    histories = []
    for fingerprint in store.fingerprints(test):
        records: list[HistoryRecord] = store.latest(fingerprint, limit)
        changes = change_points(history_of(records, rule))
        rows = [
            HistoryRow(
                run_id=record.run_id,
                started_at=record.started_at.isoformat(timespec="seconds"),
                verdict=str(record.verdict),
                value=record.metrics.get(rule.metric, {}).get(rule.aggregate),
                change=against_history(changes.get(record.run_id)),
            )
            for record in records
        ]
        histories.append(FingerprintHistory(fingerprint=fingerprint, runs=rows))
    return histories


def render(test: str, rule: RegressionRule, histories: list[FingerprintHistory], as_json: bool) -> str:
    if as_json:
        document = {"test": test, "metric": f"{rule.metric} {rule.aggregate}"}
        return json.dumps(document | {"fingerprints": [item.model_dump() for item in histories]}, indent=2)
    if not histories:
        return f"no runs of {test} in the history"
    lines = []
    for item in histories:
        rows: list[tuple[str, ...]] = [("STARTED", "RUN", "VERDICT", f"{rule.metric} {rule.aggregate}", "CHANGE")]
        rows += [
            (row.started_at, row.run_id, row.verdict, "-" if row.value is None else f"{row.value:.6g}", row.change)
            for row in item.runs
        ]
        lines += [f"fingerprint {item.fingerprint}: {len(item.runs)} run(s)", *aligned(rows), ""]
    return "\n".join(lines).rstrip("\n")


def history(test: str, rule: RegressionRule, as_json: bool, limit: int = HISTORY_RUNS) -> str:
    """The rendered history of `test` from this installation's store (the S3 block's when saved, else local).

    Raises HistoryStoreError when the store cannot be read, and what loading the S3 block raises."""
    return render(test, rule, runs_by_fingerprint(history_store(OrchestrationSettings()), test, rule, limit), as_json)
