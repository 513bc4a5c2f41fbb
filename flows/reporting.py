"""A run's result: the verdict judged from what the load measured, then its report (load series into the metrics
store, Grafana annotations and links, the raw files archived, the markdown artifact)."""

from __future__ import annotations

import math
import re
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from blocks.grafana import GrafanaConnection
from flows.edge import InstalledTool, LoadOutcome
from flows.teardown import metrics_store
from infra.connections import results_bucket, saved_block
from infra.grafana import RUN_OVERVIEW, TEST_TREND, Grafana
from infra.history_store import HistoryStore, LocalHistoryStore, S3HistoryStore
from infra.images import image_ids
from infra.images.packages import package_lists
from infra.metrics_store import VictoriaMetrics
from infra.result_storage import LocalResultStorage, ResultStorage, S3ResultStorage
from infra.retries import retry_transient
from infra.revision import project_commit, project_version
from infra.settings import OrchestrationSettings
from infra.stroppy_release import ReleaseLock
from infra.targets.base import RunSpec
from stroppy_domain import stroppy_v5
from stroppy_domain.capacity import IsolationFacts
from stroppy_domain.checks import ThresholdCheck, Verdict, evaluate
from stroppy_domain.history import HistoryRecord, per_second
from stroppy_domain.host import HostEvidence, NoiseLimits, judge_noise
from stroppy_domain.load import FACTS_FILE, SUMMARY_FILE
from stroppy_domain.manifest import (
    VERSIONS_QUERY,
    Manifest,
    ManifestError,
    package_list,
    parse_postgres_facts,
    service_versions,
)
from stroppy_domain.model import BenchmarkTest, Driver, RegressionRule, Target
from stroppy_domain.plan import RunPlan
from stroppy_domain.regression import HISTORY_RUNS, RegressionVerdict, history_of, judge_history
from stroppy_domain.reports import Phase, RunFacts, run_markdown, run_versions, slug
from stroppy_domain.results import LoadMetrics, SummaryError, measure
from stroppy_domain.suite_report import Chart, load_charts
from stroppy_domain.timeseries import K6_METRICS_FILE, PGBENCH_LOG_PREFIX, Series, k6_csv_series, pgbench_log_series


class RunResult(BaseModel):
    run_id: str
    test_name: str
    target: Target
    subnet: str
    machines: dict[str, str] = Field(description="Machine name -> IP.")
    connection: str = Field(description="Where the load connected (no password).")
    load: LoadOutcome
    output_dir: str
    started_at: datetime
    phases: list[Phase] = Field(description="Each step's wall-clock window, up to the results.")
    step_seconds: dict[str, float]
    verdict: Verdict
    reason: str = Field(default="", description="Why the verdict is not PASSED.")
    checks: list[ThresholdCheck] = Field(default_factory=list)
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict, description="Metric -> aggregate -> value.")
    versions: dict[str, str] = Field(default_factory=dict, description="Load tool and database software.")
    images: list[str] = Field(default_factory=list, description="Container images of the run's services.")
    grafana_url: str | None = Field(default=None, description="The run overview dashboard; absent without Grafana.")
    dashboards: dict[str, str] = Field(default_factory=dict, description="Every dashboard of the run, by title.")
    archive: str | None = Field(default=None, description="Where the run's raw files are kept.")
    report_error: str = Field(default="", description="Why the report could not be completed, if it could not.")
    manifest: Manifest | None = Field(default=None, description="What really ran, read from the running system.")
    host: HostEvidence | None = Field(default=None, description="How busy the runner's host was; noisy or not.")
    host_error: str = Field(default="", description="Why there is no host evidence, when there is none.")
    isolation: IsolationFacts | None = Field(default=None, description="The CPUs and memory machines were held to.")
    fingerprint: str = Field(default="", description="What makes runs comparable (stroppy_domain.history).")
    history: str | None = Field(default=None, description="Where the run's history record is kept, if it has one.")
    regression: RegressionVerdict | None = Field(
        default=None, description="The run against its fingerprint's history, when the test has a regression rule."
    )
    charts: list[Chart] = Field(default_factory=list, description="The load's per-second series, for the report.")


def base_manifest(
    test: BenchmarkTest, settings: OrchestrationSettings, installed: InstalledTool | None = None
) -> Manifest:
    """The master's part of a run's manifest: the project's revision, the pinned load tool's checksum, and what the
    runner `installed` (its version and binary's checksum).

    Raises ReleaseError when the test's stroppy release is no longer pinned."""
    sha256 = None
    if test.stroppy.driver is Driver.STROPPY and test.stroppy.version is not None:
        sha256 = ReleaseLock.read(settings.release_lock).pinned(test.stroppy.version, settings.release_lock).sha256
    return Manifest(
        project_version=project_version(), project_commit=project_commit(), load_tool_sha256=sha256,
        load_tool_version=installed.version if installed else None,
        load_tool_binary_sha256=installed.binary_sha256 if installed else None,
    )  # fmt: skip


def _with_database_facts(manifest: Manifest, output_dir: Path) -> Manifest:
    facts = output_dir / FACTS_FILE
    if not facts.is_file():
        return manifest.model_copy(update={"facts_error": f"the load wrote no {FACTS_FILE}"})
    try:
        version, settings = parse_postgres_facts(facts.read_text())
    except ManifestError as error:
        return manifest.model_copy(update={"facts_error": str(error)})
    return manifest.model_copy(update={"postgres_version": version, "postgres_settings": settings})


def judge(
    test: BenchmarkTest,
    run: RunSpec,
    outcome: LoadOutcome,
    output_dir: Path,
    beside: list[str],
    limits: NoiseLimits,
    manifest: Manifest,
) -> RunResult:
    """Parse what the load measured and check the test's thresholds; unreadable output is an ERROR verdict. The host
    evidence says which runs went `beside` this one and whether its numbers are noisy by `limits`; the manifest gets
    the database's facts the load read."""
    summary = output_dir / SUMMARY_FILE
    report = "\n".join(outcome.steps[-1].output_tail) if outcome.steps else ""
    checks: list[ThresholdCheck] = []
    try:
        metrics = measure(str(test.stroppy.driver), summary.read_text() if summary.is_file() else None, report)
    except SummaryError as error:
        verdict, reason, metrics = Verdict.ERROR, f"the load's results cannot be read: {error}", LoadMetrics()
    else:
        verdict, checks = evaluate(test.thresholds, metrics)
        failed = [f"{c.metric} {c.expression} (observed {c.observed})" for c in checks if not c.passed]
        reason = ("thresholds not met: " + "; ".join(failed)) if failed else ""
        last = outcome.steps[-1] if outcome.steps else None
        exited = stroppy_v5.exit_verdict(last.exit_code, last.output_tail, bool(failed)) if last else None
        if exited is not None:
            verdict, reason = Verdict.FAILED, "; ".join(part for part in (reason, exited) if part)
    plan = run.plan
    facts = _with_database_facts(manifest, output_dir)
    return RunResult(
        run_id=run.run_id, test_name=test.name, target=plan.target, subnet=plan.subnet,
        machines={machine.name: machine.ip for machine in plan.machines}, connection=plan.connection.dsn(),
        load=outcome, output_dir=str(output_dir), started_at=datetime.now(UTC), phases=[], step_seconds={},
        verdict=verdict, reason=reason, checks=checks,
        metrics={name: metric.values for name, metric in metrics.metrics.items()},
        versions=run_versions(test) | ({"postgresql": facts.postgres_version} if facts.postgres_version else {}),
        images=sorted({c.image for m in plan.machines for c in m.containers}),
        host=judge_noise(outcome.host, beside, limits) if outcome.host else None, host_error=outcome.host_error,
        manifest=facts,
    )  # fmt: skip


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
def report_run(
    result: RunResult, run: RunSpec, settings: OrchestrationSettings, rule: RegressionRule | None = None
) -> RunResult:
    """Load series into the metrics store, Grafana, the history (judged by `rule` against it first, when the test
    has one: a regression fails the run), raw files, the markdown artifact. Every part is idempotent.

    Raises MetricsStoreError when the metrics store refuses the series or cannot be reached, LoadSeriesError when
    the load's log files are malformed, GrafanaError when Grafana refuses or cannot be reached, HistoryStoreError
    when the history cannot be read or written, and ResultStorageError when the raw files cannot be stored."""
    with metrics_store(settings) as store:
        return _report(result, run, settings, rule, store)


def _report(
    result: RunResult,
    run: RunSpec,
    settings: OrchestrationSettings,
    rule: RegressionRule | None,
    store: VictoriaMetrics,
) -> RunResult:
    output_dir = Path(result.output_dir)
    series = _load_series(output_dir)
    store.import_series(result.run_id, series)
    result = result.model_copy(update={"charts": load_charts(series)})
    ended_at = datetime.now(UTC)
    packages: dict[str, str] = {}
    if result.manifest is not None:
        ids = image_ids(result.images)
        packages = package_lists(ids)
        window_s = int((ended_at - result.started_at).total_seconds()) + 60
        found = store.query(VERSIONS_QUERY.format(run_id=result.run_id, window_s=window_s))
        manifest = result.manifest.model_copy(
            update={
                "image_ids": ids,
                "image_packages": {ref: package_list(text, _packages_file(ref)) for ref, text in packages.items()},
                "service_versions": service_versions(found),
            }
        )
        result = result.model_copy(update={"manifest": manifest})
    if result.verdict in (Verdict.PASSED, Verdict.FAILED) and result.fingerprint:
        result = _into_history(result, series, rule, history_store(settings))
        finite = {
            metric: {aggregate: value for aggregate, value in aggregates.items() if math.isfinite(value)}
            for metric, aggregates in result.metrics.items()
        }
        store.record_history_points(result.test_name, result.fingerprint, finite, result.started_at)
    connection = saved_block(GrafanaConnection, settings.grafana_block)
    if connection is not None:
        grafana = Grafana(connection.get_client(), connection.folder, connection.datasource_url)
        grafana.provision()
        grafana.annotate(result.run_id, result.test_name, result.phases)
        dashboards = grafana.links(result.run_id, result.started_at, ended_at)
        if result.history is not None:
            dashboards[TEST_TREND] = grafana.trend_url(result.fingerprint)
        judged = result.regression
        if judged is not None and judged.verdict in ("regression", "improvement"):
            grafana.annotate_change(result.test_name, result.fingerprint, result.started_at, judged.reason)
        result = result.model_copy(update={"dashboards": dashboards, "grafana_url": dashboards[RUN_OVERVIEW]})
    run_dir = settings.results_dir / result.run_id
    _write_run_files(run_dir, run.plan, result, packages)
    result = result.model_copy(update={"archive": result_storage(settings).store(result.run_id, run_dir)})
    facts = RunFacts(
        **result.model_dump(include=set(RunFacts.model_fields) - {"ended_at", "target"}),
        target=str(result.target), ended_at=ended_at,
    )  # fmt: skip
    create_markdown_artifact(
        key=f"run-{slug(result.test_name)}",
        markdown=run_markdown(facts),
        description=f"{result.run_id}: {result.verdict}",
    )
    return result


def _load_series(output_dir: Path) -> list[Series]:
    """The load's per-second series from whichever files its driver wrote (pgbench logs or k6 CSV output)."""
    series: list[Series] = []
    logs = sorted(output_dir.glob(f"{PGBENCH_LOG_PREFIX}.*"))
    if logs:
        with ExitStack() as files:  # one log per pgbench thread: together they are the load
            series += pgbench_log_series(*(files.enter_context(path.open()) for path in logs))
    k6_file = output_dir / K6_METRICS_FILE
    if k6_file.is_file():
        with k6_file.open(newline="") as lines:
            series += k6_csv_series(lines)
    return series


def _packages_file(image: str) -> str:
    return f"packages/{re.sub(r'[^A-Za-z0-9_.-]', '_', image)}.txt"


def _write_run_files(run_dir: Path, plan: RunPlan, result: RunResult, packages: dict[str, str]) -> None:
    """Beside the load's files: the plan (passwords masked), every rendered config, each step's output, each image's
    package list, the result."""
    (run_dir / "configs").mkdir(parents=True, exist_ok=True)
    for image, text in packages.items():
        target = run_dir / _packages_file(image)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (run_dir / "plan.json").write_text(plan.model_dump_json(indent=1))
    for machine in plan.machines:
        for container in machine.containers:
            for file in container.files:
                target = run_dir / "configs" / machine.name / str(container.kind) / file.path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(file.content)
    for load_step in result.load.steps:
        (run_dir / f"{load_step.name}.log").write_text("\n".join(load_step.output_tail) + "\n")
    (run_dir / "result.json").write_text(result.model_dump_json(indent=1))


def _into_history(
    result: RunResult, series: list[Series], rule: RegressionRule | None, store: HistoryStore
) -> RunResult:
    """The run judged against the earlier runs of its fingerprint when the test has a rule (a regression fails it),
    then its record added to the history."""
    record = _record(result, series)
    if rule is not None:
        earlier = [old for old in store.latest(result.fingerprint, HISTORY_RUNS) if old.run_id != result.run_id]
        judged = judge_history(history_of([*earlier, record], rule))
        result = result.model_copy(update={"regression": judged})
        if judged.verdict == "regression":
            reason = "; ".join(part for part in (result.reason, judged.reason) if part)
            result = result.model_copy(update={"verdict": Verdict.FAILED, "reason": reason})
            record = record.model_copy(update={"verdict": Verdict.FAILED})
    return result.model_copy(update={"history": store.append(record)})


def _record(result: RunResult, series: list[Series]) -> HistoryRecord:
    return HistoryRecord(
        run_id=result.run_id, test=result.test_name, fingerprint=result.fingerprint, started_at=result.started_at,
        target=result.target, verdict=result.verdict, metrics=result.metrics, per_second=per_second(series),
        versions=result.versions, manifest=result.manifest,
    )  # fmt: skip


def history_store(settings: OrchestrationSettings) -> HistoryStore:
    """The S3 block's bucket, under `history/`, when it is saved; the local history directory otherwise."""
    bucket = results_bucket(settings)
    return S3HistoryStore(bucket) if bucket is not None else LocalHistoryStore(settings.history_dir)


def result_storage(settings: OrchestrationSettings) -> ResultStorage:
    bucket = results_bucket(settings)
    return S3ResultStorage(bucket) if bucket is not None else LocalResultStorage(settings.archive_dir)
