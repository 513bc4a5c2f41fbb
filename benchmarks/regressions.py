"""Detection power and false alarms of `stroppy_domain.regression.judge_history` on synthetic histories (issue 16).

Each history is a run-to-run series around 1000 with Gaussian noise of a given coefficient of variation; a drop, when
there is one, multiplies every run from some point on. The last run of each history is judged, and the share judged
a regression is compared with the issue's targets. The RNG is seeded, so the same command prints the same numbers.
The true rates sit about one point inside the targets (95.9% and 98.3% detected, 0.7% false alarms, measured over
15,000 histories each), so the default of 4000 histories per scenario keeps the sampling error (the printed 95% CI)
small enough that the verdict does not hinge on the seed:

    uv run python benchmarks/regressions.py [--histories N] [--seed S]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from stroppy_domain.regression import History, HistoryRun, judge_history

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    name: str
    baseline_runs: int
    runs_after_drop: int
    drop_percent: float
    noise_percent: float
    tolerance_percent: float
    target: str
    """What the share of regressions must be: at least (`>=`) a detection rate, at most (`<=`) a false-alarm rate."""
    target_rate: float | None

    def met(self, rate: float) -> bool | None:
        if self.target_rate is None:
            return None
        return rate >= self.target_rate if self.target == ">=" else rate <= self.target_rate


SCENARIOS = (
    Scenario("5% drop, 2% noise, tol 3%, 5 runs after", 20, 5, 5, 2, 3, ">=", 0.95),
    Scenario("10% drop, 3% noise, tol 5%, 3 runs after", 20, 3, 10, 3, 5, ">=", 0.95),
    Scenario("stationary 30 runs, 3% noise, tol 3%", 30, 0, 0, 3, 3, "<=", 0.01),
    # Not targets: how the same drops fare with a short history, which must still be judged without error.
    Scenario("5% drop, 2% noise, tol 3%, 5 runs after, 5 before", 5, 5, 5, 2, 3, "", None),
    Scenario("10% drop, 3% noise, tol 5%, 3 runs after, 5 before", 5, 3, 10, 3, 5, "", None),
)


def synthetic_history(scenario: Scenario, rng: np.random.Generator) -> History:
    count = scenario.baseline_runs + scenario.runs_after_drop
    values = 1000 * (1 + scenario.noise_percent / 100 * rng.standard_normal(count))
    values[scenario.baseline_runs :] *= 1 - scenario.drop_percent / 100
    runs = [
        HistoryRun(run_id=f"run-{index}", started_at=START + timedelta(days=index), value=float(value))
        for index, value in enumerate(values)
    ]
    return History(metric="tps", tolerance_percent=scenario.tolerance_percent, runs=runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", type=int, default=4000, help="histories per scenario (default 4000)")
    parser.add_argument("--seed", type=int, default=16, help="seed of the RNG (default 16)")
    arguments = parser.parse_args()
    rng = np.random.default_rng(arguments.seed)
    print(f"{arguments.histories} histories per scenario, seed {arguments.seed}; the last run of each is judged\n")
    all_met = True
    for scenario in SCENARIOS:
        histories = [synthetic_history(scenario, rng) for _ in range(arguments.histories)]
        started = time.perf_counter()
        verdicts = [judge_history(history).verdict for history in histories]
        elapsed = time.perf_counter() - started
        rate = verdicts.count("regression") / len(verdicts)
        kind = "false alarms" if scenario.drop_percent == 0 else "detected"
        met = scenario.met(rate)
        if met is None:
            outcome = "(no target)"
        else:
            outcome = f"target {scenario.target} {scenario.target_rate:.0%}: {'met' if met else 'NOT MET'}"
            all_met &= met
        margin = 1.96 * math.sqrt(rate * (1 - rate) / len(verdicts))
        print(
            f"{scenario.name:52} {kind} {rate:7.2%} (95% CI ±{margin:.2%})"
            f"  improvements {verdicts.count('improvement') / len(verdicts):6.2%}"
            f"  {elapsed * 1000 / len(verdicts):.3f} ms/history  {outcome}"
        )
    print(f"\nall targets met: {'yes' if all_met else 'NO'}")
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
