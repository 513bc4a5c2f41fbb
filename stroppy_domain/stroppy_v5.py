"""stroppy v5's command line, as its source defines it: which workloads and knobs a release offers, and the two
commands that prepare and measure a workload. Pure; nothing here runs anything.

Read from the repository stroppy-io/stroppy at tag v5.7.3, the latest release; every path below is in it.

- The released binary is k6 v1.8.0 with stroppy's extension (`Makefile:291-305`, `go.mod:22`). `stroppy run` parses its
  own arguments (`cmd/stroppy/commands/run/run.go:235-316`): flags before the first `--`, at most two adjacent
  positionals (the workload, then an optional SQL file), and everything after `--` goes to `k6 run` unchanged
  (`run.go:240-245`).
- Workloads are resolved in the current directory, then `~/.stroppy/`, then the embedded catalogue
  (`internal/runner/resolve.go:171-225`); `tpcb/tx` finds `workloads/tpcb/tx.ts`, while a bare `tpcb` finds nothing
  (`resolve.go:230-245`). No `gen` is needed (`workloads/embed.go:32-41`).
- The database is a driver preset and its overrides: `-d pg -D url=...` (`run.go:521-603`,
  `internal/runner/driver_preset.go:85-188`). v4 removed `DRIVER_URL`; v5.7.3 reads it nowhere. The URL carries no
  password: the pg driver builds its pool with `pgxpool.ParseConfig` (`pkg/driver/postgres/pool/pool.go:80`), and pgx
  reads a missing password from `PGPASSFILE`.
- Knobs are environment variables the script declares with `ENV(...)`, given with `-e KEY=VALUE`
  (`run.go:402-428`, `internal/runner/env_override.go:14-42`): `VUS` and `DURATION` shape the run
  (`internal/static/helpers.ts:601-634`; with `DURATION` set it is a constant-VUs throughput run), `SCALE_FACTOR`
  sizes it (`workloads/tpcb/tpcb_common.ts:32`, `workloads/tpcc/tpcc_common.ts:72`).
- A workload's steps are chosen with `--steps`/`--no-steps` (`run.go:337-368`); upstream's recommended flow loads
  with `--no-steps workload`, then measures with `--steps workload` (`workloads/tpcb/README.md:89-91`), so the
  measurement holds only the measured transactions.
- k6 runs with the working directory in a temporary directory (`internal/runner/script_runner.go:556-574`): the
  files k6 reads or writes are named by absolute paths.
- Exit codes are k6's, passed on (`internal/runner/k6_exit.go:24-62`, `run.go:189-194`): 99 when thresholds fail,
  108 when the script aborts the test (TPC-C's `validate_population`, `workloads/tpcc/tpcc_common.ts:650-653`), 104
  for an invalid command line or configuration (`run.go:204-206`).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from stroppy_domain.model import Model

MAJOR = 5
DRIVER_PRESET = "pg"
MEASURED_STEP = "workload"

THRESHOLDS_EXIT = 99
"""k6's ThresholdsHaveFailed: the run finished and its thresholds say FAILED."""
ABORTED_EXIT = 108
"""k6's ScriptAborted: the workload stopped the test itself, e.g. TPC-C's population check failed."""
VERDICT_EXITS = (THRESHOLDS_EXIT, ABORTED_EXIT)

SUMMARY_TREND_STATS = ("avg", "min", "med", "max", "p(90)", "p(95)", "p(99)")
"""What tpcb sets (`workloads/tpcb/tpcb_common.ts:64`); a threshold's own percentiles are added to it."""

COMMON_KNOBS = ("STROPPY_ERROR_MODE", "LOG_LEVEL", "LOG_MODE")
"""Read by every script (`internal/static/helpers.ts:80-82`, `pkg/common/logger/logger.go:93-94`)."""

RUN_KNOBS = (
    "VUS", "DURATION", "SCALE_FACTOR", "BRANCHES", "WAREHOUSES", "ITER", "MAX_DURATION", "SQL_FILE",
    "STROPPY_STEPS", "STROPPY_NO_STEPS",
)  # fmt: skip
"""What the run sets from the test (`clients`, `duration`, `scale`, the steps), or would contradict it: the scale's
aliases, the power-test knobs a timed run ignores, and the SQL file stroppy picks for the driver."""


class WorkloadSpec(Model):
    """One embedded workload of the release and the knobs its script declares."""

    name: str
    knobs: tuple[str, ...] = Field(description="Environment the script declares with ENV(), less what the run sets.")


# workloads/tpcb/tpcb_common.ts:32-95 and workloads/tpcc/tpcc_common.ts:71-89,702,813,841
_TPCB_KNOBS = ("RETRY_ATTEMPTS", "POOL_SIZE", "LOAD_WORKERS", "PG_UNLOGGED", "TX_ISOLATION")
_TPCC_KNOBS = (*_TPCB_KNOBS, "WAREHOUSE_START", "LOAD_ITEMS", "PACING", "STROPPY_NO_DEFAULT")

WORKLOADS: dict[str, WorkloadSpec] = {
    spec.name: spec
    for spec in (
        WorkloadSpec(name="tpcb/tx", knobs=_TPCB_KNOBS),
        WorkloadSpec(name="tpcb/procs", knobs=_TPCB_KNOBS),
        WorkloadSpec(name="tpcc/tx", knobs=_TPCC_KNOBS),
        WorkloadSpec(name="tpcc/procs", knobs=_TPCC_KNOBS),
    )
}
"""The embedded workloads (`workloads/`) that run TPC transactions against PostgreSQL at a scale: what a test can
measure. The TPC-H and TPC-DS query suites and the SQL runners are not offered."""


K6_METRICS = (
    "checks", "data_received", "data_sent", "dropped_iterations", "group_duration", "iteration_duration",
    "iterations", "vus", "vus_max",
)  # fmt: skip
"""k6's own metrics that a stroppy script can have samples of."""
STROPPY_METRICS = (
    "tx_total_duration", "tx_clean_duration", "tx_commit_rate", "tx_queries_per_tx", "tx_error_rate",
    "run_query_duration", "run_query_count", "run_query_error_rate", "insert_duration", "insert_error_rate",
    "tx_count", "tx_tps", "run_query_qps", "insert_rows_total", "insert_progress_rows_total",
    "insert_progress_rows_per_second",
)  # fmt: skip
"""Every script's metrics: `internal/static/helpers.ts:129-138` and `cmd/xk6air/metrics.go:63-86`."""
_TPCC_TRANSACTIONS = ("new_order", "payment", "order_status", "delivery", "stock_level")
WORKLOAD_METRICS = {
    "tpcb": ("tpcb_retry_attempts",),  # workloads/tpcb/tpcb_common.ts:34
    "tpcc": (  # workloads/tpcc/tpcc_common.ts:48-66
        *(f"tpcc_{name}_{kind}" for name in _TPCC_TRANSACTIONS for kind in ("total", "duration")),
        "tpcc_rollback_decided", "tpcc_rollback_done", "tpcc_payment_remote", "tpcc_payment_byname",
        "tpcc_payment_bc", "tpcc_order_status_byname", "tpcc_remote_line_total", "tpcc_remote_line_remote",
        "tpcc_retry_attempts",
    ),
}  # fmt: skip


def metric_problem(workload: str, metric: str) -> str | None:
    """Why a threshold cannot name `metric` (with or without a tag filter) for `workload`: k6 refuses a threshold
    on a metric the script does not define, before the run starts (exit 104). None when it can."""
    family = workload.split("/", 1)[0]
    known = (*K6_METRICS, *STROPPY_METRICS, *WORKLOAD_METRICS.get(family, ()))
    if metric.split("{", 1)[0].strip() in known:
        return None
    return f"{workload} has no metric {metric!r}; k6 would refuse the threshold. Its metrics: {', '.join(known)}"


def workload_problem(name: str) -> str | None:
    """Why v5 cannot run `name`, or None when it can."""
    if name in WORKLOADS:
        return None
    return f"stroppy v{MAJOR} has no workload {name!r}; it offers {', '.join(WORKLOADS)}"


def knob_problems(workload: str, env: Mapping[str, object]) -> dict[str, str]:
    """Each variable of `env` the workload's script does not read, or that the run sets itself, with the reason.

    Variables for k6 (`K6_*`) and libpq (`PG*`, checked apart) pass through."""
    spec = WORKLOADS.get(workload)
    if spec is None:
        return {}
    offered = (*spec.knobs, *COMMON_KNOBS)
    problems = {}
    for name in env:
        if name in RUN_KNOBS:
            problems[name] = "is set by the run from the test's clients, duration, scale and steps"
        elif name not in offered and not name.startswith(("K6_", "PG")):
            problems[name] = f"is not a knob of {workload}; it reads {', '.join(offered)}"
    return problems


def _options(env: dict[str, str]) -> list[str]:
    return [argument for name, value in env.items() for argument in ("-e", f"{name}={value}")]


def prepare_argv(binary: str, workload: str, url: str, scale: int, env: dict[str, str]) -> list[str]:
    """Create and load the schema at the test's scale: every step but the measured one."""
    knobs = env | {"SCALE_FACTOR": str(scale)}
    return [
        binary, "run", workload, "-d", DRIVER_PRESET, "-D", f"url={url}", *_options(knobs),
        "--no-steps", MEASURED_STEP,
    ]  # fmt: skip


def measure_argv(binary: str, workload: str, url: str, knobs: dict[str, str], k6_arguments: list[str]) -> list[str]:
    """The measured step only, with `clients` VUs for the duration, and k6's arguments after `--`."""
    return [
        binary, "run", workload, "-d", DRIVER_PRESET, "-D", f"url={url}", *_options(knobs),
        "--steps", MEASURED_STEP, "--", *k6_arguments,
    ]  # fmt: skip


def k6_arguments(workdir: str, summary: str, samples: str, options: str | None, trend_stats: list[str]) -> list[str]:
    """k6's summary export, the statistics the thresholds need, every sample as CSV and the thresholds' options file,
    all by absolute path under `workdir`."""
    arguments = [
        "--summary-export", f"{workdir}/{summary}", "--summary-trend-stats", ",".join(trend_stats),
        "--out", f"csv={workdir}/{samples}",
    ]  # fmt: skip
    return [*arguments, "--config", f"{workdir}/{options}"] if options else arguments


def exit_verdict(exit_code: int | None, output_tail: list[str], thresholds_failed: bool) -> str | None:
    """Why a measured run that ended with one of `VERDICT_EXITS` failed, from its exit code and last output lines,
    when the thresholds do not already say it; None for any other exit code."""
    if exit_code == THRESHOLDS_EXIT and not thresholds_failed:
        return "k6 exited 99: its thresholds failed, though its summary names none that did"
    if exit_code == ABORTED_EXIT:
        aborted = next((line for line in reversed(output_tail) if "test aborted" in line), None)
        return "the workload aborted the test (k6 exit 108)" + (f": {aborted.strip()[-400:]}" if aborted else "")
    return None
