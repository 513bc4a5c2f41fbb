"""Is the latest run of a test a regression against its history? The pure decision behind the `regressions` command
and, later, the history check of a suite: a history of one metric in, a verdict out; no I/O.

How it decides, and what it took from the tools people use:

- Apache Otava (formerly Hunter, DataStax) finds change points with E-divisive means and, instead of E-divisive's
  permutation test, judges each candidate split with Student's two-sample t-test between the segments either side,
  keeping it when the p-value is below `max_pvalue` (default 0.001) and the relative change is at least
  `min_magnitude`. We keep that pair: a split is a change only when it is significant by a t-test AND at least the
  test's tolerance, so noise is never a regression however many runs there are, and a tiny, real shift is reported
  but does not fail a test.
- Bencher's t-test threshold judges a new value against the distribution of a window of past values (with a minimum
  sample size below which it does not judge). We judge only the last run, against the runs before the change, and
  say `insufficient_history` below `MIN_BASELINE_RUNS` instead of guessing.

Differences, and why: only the last run is judged, so we do not segment the whole series hierarchically; we scan the
split points whose after-segment holds the last run and at most `RECENT_RUNS` runs (a change older than that was already
judged on an earlier night), and take the split with the largest |t|. Scanning several splits is several tests, so the
smallest p-value is multiplied by the number of splits scanned (Bonferroni): the chance that a history without any
change (and Gaussian noise) is called a regression stays at most `FAMILY_ALPHA` / 2, whatever the tolerance. Student's
pooled-variance test rather than Welch's: the after-segment is often one to three runs, whose own spread says almost
nothing, while run-to-run noise is a property of the setup that a change shifts but does not reshape; Welch's test would
throw away nearly all its degrees of freedom there. The change is measured from the baseline's median (robust to an odd
past run) to the after-segment's mean (the short segment the t-test compared, where the mean is the more efficient
estimate). The p-value is the one `scipy.stats.ttest_ind(before, after)` gives (a unit test holds them equal), computed
with `scipy.special.stdtr`, the Student t distribution function under `scipy.stats`: importing `scipy.stats` costs about
two seconds every time the command starts. Per-second `samples` are validated but not used: the spread within one run
understates the run-to-run noise that decides whether two runs differ.

`benchmarks/regressions.py` measures the detection power and false alarms on synthetic histories.
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BeforeValidator, Field, ValidationInfo, field_validator

from stroppy_domain.history import HistoryRecord
from stroppy_domain.model import RegressionRule
from stroppy_domain.model_base import Flag, InputModel, Model, refusal, refuse, text_refusals

MIN_BASELINE_RUNS = 3
"""Runs before a change needed to estimate the noise; with fewer, every verdict says `insufficient_history`."""
RECENT_RUNS = 6
"""Split points scanned: the change may have begun at any of the last this many runs. Few splits keep the
multiple-testing correction mild, and five runs after a change are enough to see it."""
MAX_BASELINE_RUNS = 50
"""Runs before the earliest split point that the judgement looks at (Otava's default window), so a long history is
judged against its recent past, in constant time."""
FAMILY_ALPHA = 0.02
"""Bonferroni bound, over all the splits scanned, on the chance of a false change in either direction when the
run-to-run noise is Gaussian; at most half of it is the chance of a false regression."""
_NOISE_FLOOR = 1e-9
"""Spread below this fraction of the values' magnitude is rounding, not noise: constant runs have no noise at all."""

Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _iso_text(value: object) -> object:
    """Raises ValueError unless `value` is text, so a bare number is not read as seconds since 1970."""
    if not isinstance(value, str | datetime):
        raise ValueError("expected an ISO-8601 date and time with a timezone, such as '2026-05-01T02:00:00Z'")
    return value


class HistoryRun(InputModel):
    """One earlier (or, last in the list, the judged) run of the test: its value of the metric."""

    run_id: str = Field(min_length=1)
    started_at: Annotated[AwareDatetime, BeforeValidator(_iso_text)]
    value: Finite
    samples: list[Finite] | None = None

    @field_validator("run_id")
    @classmethod
    def _clean_text(cls, value: Any, info: ValidationInfo) -> Any:
        """Raises ValidationError when the run id holds a control character. Overrides `InputModel`'s check of every
        field: the other fields are numbers and times, and walking thousands of samples per run took most of the
        time of judging a file of histories."""
        refuse(list(text_refusals(value, (), free_text=False)), cls.__name__)
        return value


class History(InputModel):
    """The runs of one test with the same fingerprint, oldest first; the last run is the one judged."""

    metric: str = Field(min_length=1)
    higher_is_better: Flag = True
    tolerance_percent: Finite = Field(gt=0)
    runs: list[HistoryRun]

    @field_validator("runs")
    @classmethod
    def _in_time_order(cls, runs: list[HistoryRun]) -> list[HistoryRun]:
        """Raises ValidationError naming each run that started before the run listed ahead of it, and each run id
        listed twice: the verdict judges the last run, so the order must be the order they ran in."""
        problems = []
        first_index: dict[str, int] = {}
        for index, run in enumerate(runs):
            if index and run.started_at < runs[index - 1].started_at:
                before = runs[index - 1].started_at.isoformat()
                reason = (
                    f"runs must be in time order, oldest first; this one started before runs[{index - 1}] ({before})"
                )
                problems.append(refusal(reason, (index, "started_at"), run.started_at.isoformat()))
            if run.run_id in first_index:
                reason = f"each run once; this id is also runs[{first_index[run.run_id]}]"
                problems.append(refusal(reason, (index, "run_id"), run.run_id))
            first_index.setdefault(run.run_id, index)
        refuse(problems, cls.__name__)
        return runs


Verdict = Literal["regression", "improvement", "no_change", "insufficient_history"]


class Baseline(Model):
    """The runs the last run was compared with."""

    runs: int
    median: float | None
    first_run: str | None
    last_run: str | None


class RegressionVerdict(Model):
    metric: str
    verdict: Verdict
    change_percent: float | None
    """From the baseline's median to the changed runs' mean (the last run's value when no change was found), in
    percent of the baseline median: negative when the value went down. None when the baseline median is 0."""
    change_started_at_run: str | None
    """The first run after the significant change; None when no change was significant."""
    baseline: Baseline
    p_value: float | None
    """The change's p-value, corrected for the number of splits scanned."""
    reason: str


def judge_history(history: History) -> RegressionVerdict:
    """The verdict on the last run of `history`. Never raises on a valid history, whatever its length or values."""
    runs = history.runs[-(MAX_BASELINE_RUNS + RECENT_RUNS) :]
    if len(runs) < MIN_BASELINE_RUNS + 1:
        return RegressionVerdict(
            metric=history.metric,
            verdict="insufficient_history",
            change_percent=None,
            change_started_at_run=None,
            baseline=_baseline(runs[:-1]),
            p_value=None,
            reason=f"{len(history.runs)} run(s); judging the last one needs at least {MIN_BASELINE_RUNS} before it",
        )
    values = [run.value for run in runs]
    split, p_value = _most_significant_split(values)
    if p_value > FAMILY_ALPHA:
        return _no_significant_change(history, runs, p_value)
    baseline_median, changed_mean = statistics.median(values[:split]), statistics.fmean(values[split:])
    change_percent = _percent(baseline_median, changed_mean)
    baseline = _baseline(runs[:split])
    started = runs[split].run_id
    since = f"since run {started!r} ({len(runs) - split} run(s))"
    significance = f"significant (p = {p_value:.2g} after scanning {_split_count(len(runs))} splits)"
    if change_percent is not None and abs(change_percent) < history.tolerance_percent:
        verdict: Verdict = "no_change"
        reason = (
            f"{history.metric} changed {change_percent:+.2f}% {since}, {significance}, but within the tolerance of "
            f"{history.tolerance_percent:g}%"
        )
    else:
        went_up = changed_mean > baseline_median
        verdict = "improvement" if went_up == history.higher_is_better else "regression"
        size = "from a baseline median of 0" if change_percent is None else f"{change_percent:+.2f}%"
        reason = (
            f"{history.metric} {verdict}: {size} {since} against the median of {baseline.runs} run(s) before it, "
            f"{significance}, beyond the tolerance of {history.tolerance_percent:g}%"
        )
    return RegressionVerdict(
        metric=history.metric,
        verdict=verdict,
        change_percent=change_percent,
        change_started_at_run=started,
        baseline=baseline,
        p_value=p_value,
        reason=reason,
    )


def _no_significant_change(history: History, runs: list[HistoryRun], p_value: float) -> RegressionVerdict:
    return RegressionVerdict(
        metric=history.metric,
        verdict="no_change",
        change_percent=_percent(statistics.median([run.value for run in runs[:-1]]), runs[-1].value),
        change_started_at_run=None,
        baseline=_baseline(runs[:-1]),
        p_value=p_value,
        reason=f"no significant change among the last {_split_count(len(runs))} run(s) "
        f"(p = {p_value:.2g}, needs {FAMILY_ALPHA:g})",
    )


def _most_significant_split(values: list[float]) -> tuple[int, float]:
    """The index where the after-segment (which holds the last value) most likely begins, and the Bonferroni-
    corrected two-sided p-value of Student's t-test between the values before it and from it."""
    # SciPy (the `history` extra) loads only when a history is judged: a master without it still runs tests.
    from scipy.special import stdtr  # noqa: PLC0415

    count = len(values)
    splits = range(count - _split_count(count), count)
    floor = _NOISE_FLOOR * max(abs(value) for value in values)
    best_split, best_p = splits[0], 1.0
    for split in splits:
        before, after = values[:split], values[split:]
        before_mean, after_mean = statistics.fmean(before), statistics.fmean(after)
        difference = after_mean - before_mean
        squares = sum((v - before_mean) ** 2 for v in before) + sum((v - after_mean) ** 2 for v in after)
        pooled_deviation = math.sqrt(squares / (count - 2))
        if pooled_deviation <= floor:
            p = 1.0 if abs(difference) <= floor else 0.0
        else:
            t = difference / (pooled_deviation * math.sqrt(1 / len(before) + 1 / len(after)))
            p = float(2 * stdtr(count - 2, -abs(t)))
        if p < best_p:
            best_split, best_p = split, p
    return best_split, min(1.0, best_p * len(splits))


def _split_count(run_count: int) -> int:
    """How many splits a history of `run_count` runs has: each of the last `RECENT_RUNS` runs may begin the change,
    as long as `MIN_BASELINE_RUNS` runs come before it."""
    return min(RECENT_RUNS, run_count - MIN_BASELINE_RUNS)


def _percent(baseline_median: float, value: float) -> float | None:
    """`value` against `baseline_median`, in percent of its magnitude (so a negative metric going down is negative
    too); None when the baseline median is 0, which no percentage can describe."""
    if baseline_median == 0:
        return None
    return (value - baseline_median) / abs(baseline_median) * 100


def _baseline(runs: list[HistoryRun]) -> Baseline:
    if not runs:
        return Baseline(runs=0, median=None, first_run=None, last_run=None)
    return Baseline(
        runs=len(runs),
        median=statistics.median([run.value for run in runs]),
        first_run=runs[0].run_id,
        last_run=runs[-1].run_id,
    )


HISTORY_RUNS = MAX_BASELINE_RUNS + RECENT_RUNS
"""The most runs `judge_history` looks at: the ones to read from a store."""


def history_of(records: list[HistoryRecord], rule: RegressionRule) -> History:
    """The history of `rule`'s metric over `records` (oldest first, the judged run last); a record without a finite
    value of it is left out."""
    runs = [
        HistoryRun(run_id=record.run_id, started_at=record.started_at, value=value)
        for record in records
        if (value := record.metrics.get(rule.metric, {}).get(rule.aggregate)) is not None and math.isfinite(value)
    ]
    return History(
        metric=f"{rule.metric} {rule.aggregate}", higher_is_better=rule.higher_is_better,
        tolerance_percent=rule.max_drop, runs=runs,
    )  # fmt: skip


def change_points(history: History) -> dict[str, RegressionVerdict]:
    """Where changes began in `history`, by run id, each with the verdict that found it: every prefix is judged in
    turn, as each night judged its last run, and a change is kept at the run where it began, when first found."""
    found: dict[str, RegressionVerdict] = {}
    for end in range(MIN_BASELINE_RUNS + 1, len(history.runs) + 1):
        judged = judge_history(history.model_copy(update={"runs": history.runs[:end]}))
        if judged.verdict in ("regression", "improvement") and judged.change_started_at_run is not None:
            found.setdefault(judged.change_started_at_run, judged)
    return found
