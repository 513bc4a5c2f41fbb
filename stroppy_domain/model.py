"""The suite a user writes: tests, the load to run, and the PostgreSQL topology to run it against.

Every model forbids unknown keys, so a typo is an error instead of a silently ignored setting, and takes values as
written: no number from `true`, no control character in any text (`model_base`). Field-level rules live on the
fields (those for values that reach scripts and configuration files in `model_rules`); rules that look at several
fields at once live in `validation.py`, which reports all of them together with their paths. The database models
are in `model_database`; all of them are importable from here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from stroppy_domain.durations import Seconds
from stroppy_domain.model_base import (
    BLOCK_NAME_PATTERN,
    CRON_PATTERN,
    DEFAULT_TARGET,
    ENV_NAME_PATTERN,
    GUC_PATTERN,
    MAX_DEDICATED,
    MAX_REPLICAS,
    NAME_PATTERN,
    PATTERN_HINTS,
    PGBENCH_WORKLOAD,
    RELEASE_PATTERN,
    WORKLOAD_PATTERN,
    BackupTool,
    Driver,
    Flag,
    InputModel,
    Integer,
    Isolation,
    Model,
    PoolMode,
    Port,
    Scope,
    StorageEngine,
    Target,
    text_problem,
)
from stroppy_domain.model_database import (
    Addons,
    Backup,
    BackupAddon,
    BackupStorage,
    ClusterTemplate,
    Colocate,
    DatabaseRef,
    Dedicated,
    Etcd,
    ExistingDatabase,
    Hardware,
    InstanceTemplate,
    LocalStorage,
    NodeExporter,
    PatroniSettings,
    PgBouncer,
    Placement,
    PostgresExporter,
    PostgresSettings,
    ReplicaOverride,
    S3Storage,
    Sidecars,
    Topology,
)
from stroppy_domain.model_rules import (
    COMMAND_SETTINGS,
    FILE_SETTINGS,
    RUN_OWNED_ENV,
    Endpoint,
    GucValue,
    LoadEnv,
    PostgresqlConf,
    SecretRef,
    check_backup_path,
    check_conf_names,
    check_cron,
    check_env,
    parse_postgres_url,
)
from stroppy_domain.thresholds import check_metric_name, parse_assertion

__all__ = [
    "BLOCK_NAME_PATTERN", "COMMAND_SETTINGS", "CRON_PATTERN", "DEFAULT_RUNNER_HARDWARE", "DEFAULT_TARGET",
    "ENV_NAME_PATTERN", "FILE_SETTINGS", "GUC_PATTERN", "MAX_DEDICATED", "MAX_REPLICAS", "NAME_PATTERN",
    "PATTERN_HINTS", "PGBENCH_WORKLOAD", "RUN_OWNED_ENV", "WORKLOAD_PATTERN", "Addons", "Backup", "BackupAddon",
    "BackupStorage", "BackupTool", "BenchmarkTest", "ClusterTemplate", "Colocate", "Comparison", "DatabaseRef",
    "Dedicated", "Driver", "Endpoint", "Etcd", "ExistingDatabase", "Flag", "GucValue", "Hardware", "InputModel",
    "InstanceTemplate", "Integer", "Isolation", "LoadEnv", "LocalStorage", "MetricChoice", "Model", "NodeExporter",
    "PatroniSettings", "Percent", "PgBouncer", "Placement", "PoolMode", "Port", "PostgresExporter",
    "PostgresSettings", "PostgresqlConf", "RegressionRule", "ReplicaOverride", "S3Storage", "Scope", "SecretRef",
    "Sidecars", "StorageEngine", "StroppyCli", "Suite", "Target", "ThresholdRule", "Thresholds", "Topology",
    "check_backup_path", "check_conf_names", "check_cron", "check_env", "parse_postgres_url", "text_problem"
]  # fmt: skip


def _check_threshold(text: str) -> str:
    """`AGGREGATION OPERATOR NUMBER` in k6's grammar, described under Thresholds below.

    Raises ValueError when `text` is not such an expression."""
    parse_assertion(text)
    return text


class ThresholdRule(InputModel):
    """A k6 threshold; a plain string in the suite is the same as `{threshold: <string>}`."""

    threshold: Annotated[str, AfterValidator(_check_threshold)] = Field(
        description="A k6 expression such as `p(95)<200`."
    )
    abort_on_fail: Flag = Field(
        default=False,
        alias="abortOnFail",
        description="stroppy: k6 stops the load as soon as the threshold fails; pgbench's are checked after it.",
    )
    delay_abort_eval: Seconds | None = Field(
        default=None, alias="delayAbortEval", description="stroppy: how long k6 runs before abortOnFail applies."
    )


def _threshold_from_text(value: object) -> object:
    return {"threshold": value} if isinstance(value, str) else value


Thresholds = dict[
    Annotated[str, AfterValidator(check_metric_name)],
    list[Annotated[ThresholdRule, BeforeValidator(_threshold_from_text, json_schema_input_type=str | ThresholdRule)]],
]


class StroppyCli(InputModel):
    """The load: which driver, the stroppy release to install, and the workload it runs."""

    driver: Driver = Field(default=Driver.STROPPY, description="`pgbench` runs tpcb only.")
    version: str | None = Field(
        default=None,
        pattern=RELEASE_PATTERN,
        description="stroppy release; stroppy only.",
    )
    workload: str = Field(
        default="tpcc/tx",
        pattern=WORKLOAD_PATTERN,
        description="stroppy: a workload of its release (v5: tpcb/tx, tpcb/procs, tpcc/tx, tpcc/procs); pgbench: tpcb.",
    )
    clients: Integer = Field(
        default=4, ge=1, le=10000, description="Concurrent clients (stroppy VUs, pgbench clients)."
    )
    scale: Integer = Field(
        default=1, ge=1, le=100000, description="Scale factor (stroppy's SCALE_FACTOR, pgbench's --scale)."
    )
    duration: Seconds = Field(default=300, gt=0, le=24 * 3600, description="The measured run.")
    env: LoadEnv = Field(
        default_factory=dict,
        description="Extra environment of the load; not what the run sets. A value that is a secret names its "
        "Secret block instead, `{secret: <block>}`: the runner reads it, and it never appears in parameters or logs.",
    )


def _percent(value: object) -> object:
    """`5%` or `5` (or `2.5`) -> 5.0. Raises ValueError for a boolean or text that is not a number with `%`."""
    if isinstance(value, bool):
        raise ValueError("expected a percentage such as 5%, not a boolean")
    if isinstance(value, str):
        number = value.strip().removesuffix("%")
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", number):
            raise ValueError("expected a percentage such as 5%")
        return float(number)
    if isinstance(value, int):
        return float(value)
    return value


Percent = Annotated[
    float,
    BeforeValidator(_percent),
    Field(strict=True, gt=0, le=100, allow_inf_nan=False),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?%$"}]}),
]
"""A share in percent, more than 0 and at most 100: `5%` or `5`."""


AGGREGATE_PATTERN = r"^(count|rate|value|avg|min|max|med|p\([0-9]+(\.[0-9]+)?\))$"


class MetricChoice(InputModel):
    """One value of a run's results, and which way is better."""

    metric: Annotated[str, AfterValidator(check_metric_name)] = Field(
        description="A metric of the run's results: `tps` (pgbench), `tx_total_duration` (stroppy), ..."
    )
    aggregate: str = Field(
        default="value",
        pattern=AGGREGATE_PATTERN,
        description="Which of its values: `value` for pgbench's `tps`, `p(95)` or `avg` for a latency.",
    )
    higher_is_better: Flag = Field(default=True, description="`false` for latencies: a rise is the worsening.")


class RegressionRule(MetricChoice):
    """Judge each run against the runs before it with the same fingerprint; a significant worsening beyond
    `max_drop` fails the test (stroppy_domain.regression)."""

    max_drop: Percent = Field(description="The largest worsening that is not a regression, e.g. `5%`.")


class Comparison(MetricChoice):
    """Candidates against a baseline, over their repetitions (stroppy_domain.comparison): the change, its 95%
    confidence interval, and whether it is real and large enough to matter."""

    baseline: str = Field(pattern=NAME_PATTERN, description="The name of the test the candidates are compared with.")
    candidates: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        min_length=1, max_length=16, description="Names of the tests compared with the baseline."
    )
    min_effect: Percent = Field(description="The smallest change that matters, e.g. `3%`.")


DEFAULT_RUNNER_HARDWARE = Hardware(cores=2, memory_gb=4, disk_gb=20)
MAX_REPEAT = 20


class BenchmarkTest(InputModel):
    """One test of a suite: a load, its pass/fail thresholds, and the database it runs against."""

    name: str = Field(pattern=NAME_PATTERN, description="Unique within the suite.")
    description: str = Field(default="", description="Free text.")
    target: Target | None = Field(default=None, description="Absent: the suite's target.")
    isolation: Isolation | None = Field(default=None, description="Absent: the suite's isolation.")
    stroppy: StroppyCli = Field(description="The load.")
    thresholds: Thresholds = Field(default_factory=dict, description="Pass/fail rules per metric.")
    runner_hardware: Hardware = Field(default=DEFAULT_RUNNER_HARDWARE, description="The machine that runs the load.")
    database: DatabaseRef = Field(description="What the load runs against.")
    regression: RegressionRule | None = Field(
        default=None, description="Fail a run that is significantly worse than this test's history."
    )
    keep_on_failure: Seconds | None = Field(
        default=None,
        gt=0,
        description="Keep a failed run's machines this long (e.g. `2h`) to look into them: its report says how to "
        "connect; `stroppy-flows release RUN` tears it down earlier. At most the master's "
        "`STROPPY_KEEP_ON_FAILURE_MAX_S`. Absent: the suite's; torn down at once.",
    )
    repeat: Integer = Field(
        default=1,
        ge=1,
        le=MAX_REPEAT,
        description="Separate runs of the test, each with its own machines; with a comparison, interleaved with "
        "the runs of the tests it is compared with. The suite gives the median and 95% confidence interval.",
    )


class Suite(InputModel):
    name: str = Field(pattern=NAME_PATTERN, description="The suite's name.")
    description: str = Field(default="", description="Free text.")
    target: Target = Field(default=DEFAULT_TARGET, description="Where tests run unless a test names its own.")
    isolation: Isolation = Field(
        default=Isolation.EXCLUSIVE,
        description="On a target whose machines share one host (Docker): `exclusive` gives each machine its own "
        "host CPUs (as many as its cores; a run waits until they are free) and counts its memory; `shared` lets "
        "runs share the CPUs no exclusive run holds, on purpose (a laptop), and the report says so. Memory is a "
        "hard limit either way. Unless a test names its own.",
    )
    keep_on_failure: Seconds | None = Field(
        default=None, gt=0, description="Keep failed runs' machines this long, unless a test says its own."
    )
    tests: list[BenchmarkTest] = Field(min_length=1, description="Its tests; names unique.")
    compare: list[Comparison] = Field(
        default_factory=list, max_length=16, description="Tests compared with a baseline test, over repetitions."
    )

    def target_of(self, test: BenchmarkTest) -> Target:
        return test.target or self.target

    def isolation_of(self, test: BenchmarkTest) -> Isolation:
        return test.isolation or self.isolation

    def resolved(self, test: BenchmarkTest) -> BenchmarkTest:
        """The test with what it takes from the suite written in: its isolation and how long a failure is kept."""
        keep = test.keep_on_failure or self.keep_on_failure
        return test.model_copy(update={"isolation": self.isolation_of(test), "keep_on_failure": keep})
