"""The stroppy stand-in parses, resolves and refuses exactly as stroppy v5.7.3 does (no database needed)."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from infra.stroppy_release import _unpack
from tests.conftest import REPO
from tests.standin.stroppy_archive import standin_archive

STANDIN = REPO / "tests" / "standin" / "stroppy_standin.py"


def load_standin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stroppy_standin", STANDIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["stroppy_standin"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


S = load_standin()
EMBEDDED, CWD = "embedded", "cwd"


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, and a HOME without ~/.stroppy/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def help_examples() -> list[str]:
    """The Example lines of `stroppy run --help`, continuation joined, comments and `stroppy run` dropped."""
    text = S.EXAMPLE.replace("\\\n", " ")
    lines = [" ".join(line.split("#")[0].split()) for line in text.splitlines()]
    return [line.removeprefix("stroppy run ") for line in lines if line]


# Each example of the real help: files created in the cwd first, then the resolved script and SQL (source, path),
# or the exact error.
EXAMPLES: dict[str, tuple[tuple[str, ...], tuple[str, str] | str, tuple[str, str] | None]] = {
    "tpcc/tx": ((), (EMBEDDED, "tpcc/tx.ts"), None),
    "tpcb/tx -- --duration 5m": ((), (EMBEDDED, "tpcb/tx.ts"), None),
    "tpcds tpcds-scale-100": (
        (),
        "failed to resolve input: SQL file not found in cwd, ~/.stroppy/, or embedded workloads: tpcds-scale-100",
        None,
    ),
    "tpch/tx": ((), (EMBEDDED, "tpch/tx.ts"), None),
    "simple": ((), (EMBEDDED, "simple/simple.ts"), None),
    "my_benchmark.ts": (("my_benchmark.ts",), (CWD, "my_benchmark.ts"), None),
    "./benchmarks/custom.ts data.sql": (
        ("benchmarks/custom.ts", "data.sql"),
        (CWD, "benchmarks/custom.ts"),
        (CWD, "data.sql"),
    ),
    "queries.sql": (("queries.sql",), (EMBEDDED, "execute_sql/execute_sql.ts"), (CWD, "queries.sql")),
    '"select 1"': ((), (EMBEDDED, "execute_sql/execute_sql.ts"), (EMBEDDED, "inline.sql")),
    "tpcc/tx --steps create_schema,load_data": ((), (EMBEDDED, "tpcc/tx.ts"), None),
    "tpcc/tx --no-steps load_data": ((), (EMBEDDED, "tpcc/tx.ts"), None),
    "tpcc/tx -d pg": ((), (EMBEDDED, "tpcc/tx.ts"), None),
    "tpcc/tx -d pg -D url=postgres://prod:5432": ((), (EMBEDDED, "tpcc/tx.ts"), None),
    "tpcc/procs -d pg -d1 mysql": ((), (EMBEDDED, "tpcc/procs.ts"), None),
    "tpcc/tx -e pool_size=200": ((), (EMBEDDED, "tpcc/tx.ts"), None),
    "tpcc/tx -e FOO=bar -e BAZ=qux": ((), (EMBEDDED, "tpcc/tx.ts"), None),
    "tpcb/tx -D driverType=csv -D url='/tmp/tpcb-csv?merge=true' --steps drop_schema,create_schema,load_data": (
        (),
        (EMBEDDED, "tpcb/tx.ts"),
        None,
    ),
}


def located(file: object, cwd: Path) -> tuple[str, str]:
    source, path = file.source, file.path  # type: ignore[attr-defined]
    return (source, str(Path(path).relative_to(cwd)) if source == CWD else path)


@pytest.mark.timeout(10)
def test_the_table_covers_every_example_of_the_real_help() -> None:
    assert sorted(help_examples()) == sorted(EXAMPLES)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("example", list(EXAMPLES))
def test_every_help_example_parses_and_resolves_as_v5_does(example: str, cwd: Path) -> None:
    files, script, sql = EXAMPLES[example]
    for name in files:
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        (cwd / name).write_text("-- test file\n")
    argv = shlex.split(example)
    S.parse_run_args(argv)  # every example parses, whatever its resolution
    if isinstance(script, str):
        with pytest.raises(S.StroppyError) as error:
            S.prepare_run(argv, {})
        assert (str(error.value), error.value.code) == (script, 104)
        return
    plan = S.prepare_run(argv, {})
    assert located(plan.resolved.script, cwd) == script
    assert (plan.resolved.sql and located(plan.resolved.sql, cwd)) == sql


@pytest.mark.timeout(10)
def test_flags_land_where_v5_puts_them(cwd: Path) -> None:
    plan = S.prepare_run(shlex.split("tpcc/procs -d pg -d1 mysql -D1 pool.maxOpenConns=20 -e foo=1 -- -q x"), {})
    assert plan.args.after_dash == ["-q", "x"]
    assert json.loads(plan.env["STROPPY_DRIVER_0"]) == S.DRIVER_PRESETS["pg"]
    assert json.loads(plan.env["STROPPY_DRIVER_1"])["pool"] == {"maxOpenConns": 20}
    assert plan.env["FOO"] == "1"
    args = S.parse_run_args(shlex.split("-d pg tpcb/tx --driver2=noop --driver3-opt a=b --driver-opt=c=d -D4=e=f"))
    assert args.script == "tpcb/tx" and args.drivers == {0: "pg", 2: "noop"}
    assert args.driver_opts == {3: [("a", "b")], 0: [("c", "d")], 4: [("e", "f")]}
    steps = S.parse_run_args(shlex.split("tpcb/tx --steps a,b --steps=c -e X=-abc -- --steps d"))
    assert steps.steps == ["a", "b", "c"] and steps.env == ["X=-abc"] and steps.after_dash == ["--steps", "d"]


REFUSALS = {
    "--vus 1 tpcb/tx": 'unknown run flag "--vus"; pass k6 flags after --',
    "-d=pg tpcb/tx": 'unknown run flag "-d=pg"; pass k6 flags after --',
    "a b c": 'too many positional arguments; expected script and optional sql_file before --: "c"',
    "tpcb/tx -d pg extra": 'unexpected positional argument after options: "extra"; '
    "script and sql_file must be adjacent before --",
    "tpcb/tx FOO=bar": 'unexpected key=value positional argument: "FOO=bar"; '
    "key=value arguments must follow -D/--driver-opt or -e/--env; quote values that contain spaces",
    "tpcb/tx -d": "-d: flag requires a value",
    "tpcb/tx -d -D url=x": "-d: flag requires a value",
    "tpcb/tx -D url": '-D url: expected key=value format, got "url"',
    "tpcb/tx -e FOO": 'invalid env arg "FOO": expected KEY=VALUE format',
    "tpcb/tx --steps a --no-steps b": "--steps and --no-steps are mutually exclusive",
    "tpcb/tx -d foo": 'unknown driver "foo" (available: pg, mysql, pico, ydb, noop)',
    "tpcb/tx --steps workload,set_logged": "failed to create runner: --steps [set_logged] (available: [drop_schema "
    "create_schema load_data create_indexes create_foreign_keys analyze workload]): unknown steps",
    "tpcb tpcb.sql": "failed to resolve input: script not found in cwd, ~/.stroppy/, or embedded workloads: tpcb",
    "tpcb.ts tpcb.sql -- --summary-export summary.json": "failed to resolve input: "
    "script not found in cwd, ~/.stroppy/, or embedded workloads: tpcb.ts",
    "tpcb/tx --help": 'unknown run flag "--help"; pass k6 flags after --',
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("command", list(REFUSALS))
def test_refusals_carry_v5s_message_and_exit_code_104(command: str, cwd: Path) -> None:
    with pytest.raises(S.StroppyError) as error:
        S.prepare_run(shlex.split(command), {})
    assert (str(error.value), error.value.code) == (REFUSALS[command], 104)


LOGRUS = re.compile(
    r'time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)" level=error msg="(?P<msg>(?:[^"\\]|\\.)*)"'
)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "command",
    ["--vus 1 tpcb/tx", "tpcb/tx -D url", "tpcb/tx -d foo", "tpcb.ts tpcb.sql -- --summary-export summary.json"],
)
def test_the_executable_logs_as_k6_and_exits_104(command: str, cwd: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "DRIVER_URL": "postgres://stroppy@db:5432/stroppy"}
    (cwd / "tpcb.sql").write_text("-- the old driver's generated SQL\n")
    result = subprocess.run(
        [sys.executable, str(STANDIN), "run", *shlex.split(command)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 104, result.stderr
    match = LOGRUS.fullmatch(result.stderr.strip())
    assert match, result.stderr
    assert json.loads(f'"{match["msg"]}"') == REFUSALS[command]
    assert result.stdout == ""


@pytest.mark.timeout(30)
def test_help_only_as_the_first_argument(cwd: Path) -> None:
    result = subprocess.run([sys.executable, str(STANDIN), "run", "-h"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.startswith("Run a benchmark with k6. The extension determines the mode:")
    assert f"Usage:\n  stroppy {S.USE}\n" in result.stdout and S.EXAMPLE in result.stdout


@pytest.mark.timeout(10)
def test_real_env_beats_e_and_keys_are_upper_cased(cwd: Path) -> None:
    argv = shlex.split("tpcb/tx -e vus=3 -e Duration=6s -e duration=7s -e SCALE_FACTOR=2")
    plan = S.prepare_run(argv, {"VUS": "7"})
    assert (plan.env["VUS"], plan.env["DURATION"], plan.env["SCALE_FACTOR"]) == ("7", "7s", "2")
    load = S.load_settings(plan.env, S.PROBED_STEPS["tpcb/tx.ts"])
    assert (load.vus, load.duration_s, load.scale) == (7, 7.0, 2)
    assert S.pgbench_workload(load, Path("/x"))[1:4] == ["--client=7", f"--jobs={min(7, S.os.cpu_count())}", "--time=7"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6s", 6), ("1m30s", 90), ("500", 0.5), ("1h", 3600), ("500ms", 0.5), ("1h30m", 5400), ("1d2h", 93600)],
)
def test_durations_read_as_k6_reads_them(text: str, seconds: float) -> None:
    assert S.parse_k6_duration(text) == pytest.approx(seconds)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", ["6", "abc", "5 s", "1x"])
def test_a_bad_or_bare_duration(text: str) -> None:
    if text == "6":  # a bare number is milliseconds
        assert S.parse_k6_duration(text) == pytest.approx(0.006)
        return
    with pytest.raises(S.StroppyError):
        S.parse_k6_duration(text)


URL = "postgres://stroppy@10.0.0.5:6432/stroppy"


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("command", "real_env", "url"),
    [
        ("tpcb/tx", {"DRIVER_URL": URL}, S.PG_URL),  # v5 never reads DRIVER_URL
        ("tpcb/tx -e DRIVER_URL=" + URL, {}, S.PG_URL),
        ("tpcb/tx -d pg", {}, S.PG_URL),
        ("tpcb/tx -D url=" + URL, {}, URL),
        ("tpcb/tx -d PG -D url=" + URL, {}, URL),
        ("tpcb/tx -D url=" + URL, {"STROPPY_DRIVER_0": '{"url": "postgres://env@h/db"}'}, "postgres://env@h/db"),
    ],
)
def test_the_driver_url(command: str, real_env: dict[str, str], url: str, cwd: Path) -> None:
    plan = S.prepare_run(shlex.split(command), real_env)
    assert S.load_settings(plan.env, S.PROBED_STEPS["tpcb/tx.ts"]).url == url


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("x=1", 'STROPPY_DRIVER_0: unknown driver option "x" (available: authPassword, authToken, authUser, bulkSize, '
         "caCertFile, defaultInsertMethod, defaultTxIsolation, driverType, errorMode, insertProgress, pool, postgres, "
         "sql, tlsInsecureSkipVerify, url)"),
        ("pool=10", "STROPPY_DRIVER_0: pool must be object"),
        ("errorMode=loud", "STROPPY_DRIVER_0: errorMode must be one of: abort, fail, log, silent, throw"),
    ],
)  # fmt: skip
def test_a_driver_option_the_script_refuses_is_a_k6_init_error(override: str, message: str, cwd: Path) -> None:
    plan = S.prepare_run(["tpcb/tx", "-D", override], {})
    with pytest.raises(S.StroppyError) as error:
        S.load_settings(plan.env, S.PROBED_STEPS["tpcb/tx.ts"])
    assert (str(error.value), error.value.code) == (f"Error: {message}", 107)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("command", "init", "workload"),
    [
        ("tpcb/tx", "dtgpfv", True),
        ("tpcb/tx --no-steps workload", "dtgpfv", False),
        ("tpcb/tx --steps workload", "", True),
        ("tpcb/tx --steps create_schema,load_data", "tg", False),
    ],
)
def test_steps_choose_what_pgbench_does(command: str, init: str, workload: bool, cwd: Path) -> None:
    plan = S.prepare_run(shlex.split(command), {})
    steps = S.load_settings(plan.env, S.PROBED_STEPS["tpcb/tx.ts"]).steps
    assert "".join(S.INIT_STEPS.get(step, "") for step in steps) == init
    assert ("workload" in steps) == workload


def members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as bundle:
        return {info.name: info for info in bundle.getmembers()}


@pytest.mark.timeout(60)
def test_the_archive_holds_the_standin_and_k6_and_hang_only_when_asked(tmp_path: Path) -> None:
    plain, hanging = members(standin_archive()), members(standin_archive(hang=True, extra="# tampered\n"))
    assert set(plain) == {"stroppy", "k6"} and set(hanging) == {"stroppy", "k6", "HANG"}
    assert plain["stroppy"].mode == plain["k6"].mode == 0o755 and plain["k6"].size > 10_000_000
    assert hanging["stroppy"].size == plain["stroppy"].size + len("# tampered\n")
    archive = tmp_path / "stroppy_linux_amd64.tar.gz"
    archive.write_bytes(standin_archive())
    binary = _unpack(archive, tmp_path / "runner", "v5.0.0")
    result = subprocess.run([str(binary), "version"], capture_output=True, text=True, check=True)
    assert re.fullmatch(r"stroppy  v5-standin\nk6       v\d+\.\d+\.\d+\n", result.stdout)
