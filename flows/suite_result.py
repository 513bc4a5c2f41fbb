"""What a suite returns: each run's outcome, the repetitions and comparisons, and where its report is."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flows.reporting import RunResult
from stroppy_domain.comparison import ComparisonVerdict, Repetitions


class TestOutcome(BaseModel):
    __test__ = False  # a result model, not a pytest class

    test_name: str
    repetition: int = 1
    repeat: int = Field(default=1, description="How many runs of the test the suite makes.")
    run_id: str | None
    state: str
    message: str | None = None
    result: RunResult | None = None

    @property
    def repetition_label(self) -> str:
        """`2/3` for the second of three runs; empty for a test run once."""
        return f"{self.repetition}/{self.repeat}" if self.repeat > 1 else ""


class SuiteResult(BaseModel):
    suite: str
    outcomes: list[TestOutcome]
    repetitions: list[Repetitions] = Field(default_factory=list, description="Each repeated test's runs summed up.")
    comparisons: list[ComparisonVerdict] = Field(default_factory=list)
    summary_error: str = Field(default="", description="Why repetitions and comparisons are missing, if they are.")
    report: str | None = Field(default=None, description="Where the suite's HTML report is kept.")
    report_error: str = Field(default="", description="Why there is no HTML report, when there is none.")

    @property
    def failed(self) -> list[TestOutcome]:
        return [outcome for outcome in self.outcomes if outcome.state != "COMPLETED"]
