"""What a run or suite report says: Grafana links scoped to a run, the run's markdown, the suite's table. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlencode

from pydantic import Field

from stroppy_domain.capacity import IsolationFacts
from stroppy_domain.checks import ThresholdCheck, Verdict
from stroppy_domain.comparison import ComparisonVerdict, Repetitions
from stroppy_domain.host import HostEvidence
from stroppy_domain.manifest import Manifest
from stroppy_domain.model import BenchmarkTest, Model
from stroppy_domain.regression import RegressionVerdict


class Dashboard(Model):
    uid: str
    title: str


class Phase(Model):
    """One step of a run, by wall-clock time: what Grafana annotates."""

    name: str
    started_at: datetime
    ended_at: datetime


class RunFacts(Model):
    """Everything a run's report shows."""

    test_name: str
    run_id: str
    target: str
    verdict: Verdict
    reason: str = ""
    started_at: datetime
    ended_at: datetime
    checks: list[ThresholdCheck] = Field(default_factory=list)
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    dashboards: dict[str, str] = Field(default_factory=dict, description="Dashboard title -> URL.")
    versions: dict[str, str] = Field(default_factory=dict, description="What ran: driver, stroppy, PostgreSQL.")
    images: list[str] = Field(default_factory=list)
    archive: str | None = None
    host: HostEvidence | None = None
    host_error: str = ""
    manifest: Manifest | None = None
    isolation: IsolationFacts | None = None
    regression: RegressionVerdict | None = None


class SuiteRow(Model):
    test: str
    repetition: str = Field(default="", description="`2/3` for the second of a test's three runs; empty for one.")
    state: str
    verdict: str
    history: str = Field(default="", description="The run against its history, e.g. `regression -7.2%`.")
    run_id: str
    message: str
    grafana: str


def against_history(verdict: RegressionVerdict | None) -> str:
    """A suite table's cell for a run judged against its history: the verdict and the change; empty when not."""
    if verdict is None:
        return ""
    if verdict.change_percent is None:
        return verdict.verdict
    return f"{verdict.verdict} {verdict.change_percent:+.1f}%"


def slug(text: str) -> str:
    """Lowercase letters, digits and dashes: what Prefect accepts as an artifact key and Grafana as a slug."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unnamed"


def dashboard_url(base_url: str, dashboard: Dashboard, run_id: str, start: datetime, end: datetime) -> str:
    """The dashboard with its `run_id` variable set and its time range the run's window (epoch milliseconds)."""
    query = urlencode({"var-run_id": run_id, "from": int(start.timestamp() * 1000), "to": int(end.timestamp() * 1000)})
    return f"{base_url.rstrip('/')}/d/{dashboard.uid}/{slug(dashboard.title)}?{query}"


def run_versions(test: BenchmarkTest) -> dict[str, str]:
    """What a run's numbers depend on besides the topology: the load tool and the database software."""
    load = test.stroppy
    versions = {"driver": str(load.driver), "workload": str(load.workload)}
    if load.version:
        versions["stroppy"] = load.version
    database = test.database.instance or (test.database.cluster.topology if test.database.cluster else None)
    if database is not None:
        settings = database.settings
        versions |= {"postgresql": str(settings.version), "storage engine": str(settings.storage_engine)}
        versions["patroni"] = "yes" if settings.patroni_enabled else "no"
    else:
        versions["database"] = "existing"
    return versions


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as lines of left-aligned columns two spaces apart, for the terminal."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _host_lines(host: HostEvidence | None, error: str) -> list[str]:
    if host is None:
        return [f"No host evidence: {error or 'not recorded'}."]
    lines = [
        f"**Noisy:** {'; '.join(host.noise)}." if host.noisy else "Not noisy.",
        "",
        f"{host.cpus} CPUs; before the load {host.busy_before_pct:g}% busy; during its {host.window_s:g} s "
        f"{host.busy_pct:g}% busy (its own load included), steal {host.steal_pct:g}%, iowait {host.iowait_pct:g}%, "
        f"load average {host.load_1m:g}.",
    ]
    return lines


def _manifest_lines(manifest: Manifest | None, host: HostEvidence | None) -> list[str]:
    if manifest is None:
        return []
    lines = [f"- stroppy-flows: `{manifest.project_version}` at `{manifest.project_commit}`"]
    if manifest.load_tool_sha256:
        lines.append(f"- stroppy release sha256: `{manifest.load_tool_sha256}`")
    if manifest.load_tool_version:
        lines.append(f"- stroppy binary: `{manifest.load_tool_version}`, sha256 `{manifest.load_tool_binary_sha256}`")
    if host is not None and host.kernel:
        lines.append(f"- host: kernel `{host.kernel}`, CPU `{host.cpu_model or 'unnamed'}`")
    lines += [f"- {service}: `{version}`" for service, version in sorted(manifest.service_versions.items())]
    lines += [
        f"- packages of `{image}`: {listed.count} (`{listed.file}`, sha256 `{listed.sha256[:16]}`)"
        for image, listed in sorted(manifest.image_packages.items())
    ]
    if manifest.facts_error:
        return [*lines, f"- database facts: none ({manifest.facts_error})"]
    lines += ["", "Settings that differ from PostgreSQL's defaults, as the server reports them:", ""]
    rows = [[f"`{name}`", f"`{value}`"] for name, value in sorted(manifest.postgres_settings.items())]
    return lines + (_table(["setting", "value"], rows) if rows else ["None."])


def run_markdown(facts: RunFacts) -> str:
    seconds = (facts.ended_at - facts.started_at).total_seconds()
    lines = [
        f"# {facts.test_name}: {facts.verdict}",
        "",
        f"Run `{facts.run_id}` on {facts.target}, {facts.started_at:%Y-%m-%d %H:%M:%S} to "
        f"{facts.ended_at:%H:%M:%S} UTC ({seconds:.0f} s).",
    ]
    if facts.reason:
        lines += ["", f"**Why:** {facts.reason}"]
    lines += ["", "## Thresholds", ""]
    if facts.checks:
        lines += _table(*threshold_table(facts.checks, code=True))
    else:
        lines.append("None set.")
    lines += ["", "## Key metrics", ""]
    if facts.metrics:
        lines += _table(*metric_table(facts.metrics))
    else:
        lines.append("Nothing was measured.")
    if facts.regression is not None:
        lines += ["", "## Against its history", "", facts.regression.reason]
    lines += ["", "## Dashboards", ""]
    if facts.dashboards:
        lines += [f"- [{title}]({url})" for title, url in facts.dashboards.items()]
    else:
        lines.append("No Grafana is configured for this installation.")
    lines += ["", "## Host", ""]
    lines += _host_lines(facts.host, facts.host_error)
    if facts.isolation is not None:
        lines += ["", facts.isolation.describe()]
    lines += ["", "## What ran", ""]
    lines += [f"- {name}: `{value}`" for name, value in facts.versions.items()]
    ids = facts.manifest.image_ids if facts.manifest else {}
    lines += [f"- image: `{image}`" + (f" (`{ids[image]}`)" if image in ids else "") for image in facts.images]
    lines += _manifest_lines(facts.manifest, facts.host)
    if facts.archive:
        lines += ["", f"Raw files: `{facts.archive}`"]
    return "\n".join(lines) + "\n"


Table = tuple[list[str], list[list[str]]]
"""A header and its rows, for markdown or HTML."""


def threshold_table(checks: list[ThresholdCheck], code: bool = False) -> Table:
    quote = "`" if code else ""
    rows = [
        [c.metric, f"{quote}{c.expression}{quote}", _number(c.observed),
         "pass" if c.passed else f"FAIL {c.reason}".strip()]
        for c in checks
    ]  # fmt: skip
    return ["metric", "threshold", "observed", "result"], rows


def metric_table(metrics: dict[str, dict[str, float]]) -> Table:
    rows = [
        [name, ", ".join(f"{key}={_number(value)}" for key, value in values.items())]
        for name, values in sorted(metrics.items())
    ]
    return ["metric", "values"], rows


def comparison_table(verdicts: list[ComparisonVerdict]) -> Table:
    rows = [
        [v.candidate, v.baseline, f"{v.metric} {v.aggregate}", f"{v.candidate_runs} vs {v.baseline_runs}",
         v.verdict, v.summary]
        for v in verdicts
    ]  # fmt: skip
    return ["candidate", "baseline", "metric", "runs", "verdict", "change, 95% CI"], rows


def repetition_table(repeated: list[Repetitions]) -> Table:
    rows = [
        [r.test, f"{r.metric} {r.aggregate}", str(r.runs), _number(r.median),
         "—" if r.ci_low is None else f"{_number(r.ci_low)} .. {_number(r.ci_high)}",
         ", ".join(_number(value) for value in r.values)]
        for r in repeated
    ]  # fmt: skip
    return ["test", "metric", "runs", "median", "95% CI of the mean", "each run"], rows


def comparisons_markdown(suite: str, repeated: list[Repetitions], verdicts: list[ComparisonVerdict]) -> str:
    """The suite's repetitions (median and 95% interval of each test's runs) and its comparisons, as markdown."""
    lines = [f"# {suite}: repetitions and comparisons"]
    if verdicts:
        lines += ["", "## Comparisons", "", *_table(*comparison_table(verdicts))]
    if repeated:
        lines += ["", "## Repetitions", "", *_table(*repetition_table(repeated))]
    return "\n".join(lines) + "\n"
