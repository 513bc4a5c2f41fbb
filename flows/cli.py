"""`stroppy-flows`: check and plan suites, set up and operate an installation, run suites, run edge agents.

Exit codes: 0 success; 1 a suite that did not pass, or a component that is down; 2 bad input (a suite, settings or
config file; every problem printed, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from flows.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, OperateError
from flows.input_files import InputFileError, read_bounded
from flows.worker_commands import add_worker_commands
from infra.images import planner_settings
from infra.local_control_plane import use_local_auth
from stroppy_domain.errors import REPORT_CHARS, InvalidSuiteError, Issue, PlanningError, StroppyError, printable
from stroppy_domain.parsing import parse_document
from stroppy_domain.placement import plan_run
from stroppy_domain.plan import Machine, RunPlan
from stroppy_domain.reports import aligned
from stroppy_domain.services import generate_password
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.subnets import SubnetError
from stroppy_domain.validation import assign_subnets, load_suite, structural_issues


class CliError(StroppyError):
    """A problem with the user's input, already worded for the terminal."""


def _max_input_bytes() -> int:
    from infra.settings import OrchestrationSettings  # noqa: PLC0415 - pydantic-settings, only when a file is read

    return OrchestrationSettings().max_suite_bytes


def _read(path: str, limit: int | None = None) -> str:
    """The UTF-8 text of a suite, settings or config file of at most `limit` bytes (default: the setting
    STROPPY_MAX_SUITE_BYTES).

    Raises CliError when the file cannot be read, is larger than the limit, or is not UTF-8, and pydantic's
    ValidationError when the environment's settings are not valid."""
    try:
        return read_bounded(path, _max_input_bytes() if limit is None else limit)
    except InputFileError as error:
        raise CliError(str(error)) from None


def _load_settings(path: str | None) -> PlannerSettings:
    """The defaults, with the top-level sections of the settings file (if any) in their place."""
    defaults = planner_settings()
    if path is None:
        return defaults
    from pydantic import ValidationError  # noqa: PLC0415 - needed only with a settings file

    data = parse_document(_read(path), path)
    if data is not None and not isinstance(data, dict):
        raise CliError(f"{path}: planner settings must be a mapping of 'images', 'address_spaces' and 'host_capacity'")
    try:
        return PlannerSettings.model_validate({**defaults.model_dump(), **(data or {})})
    except ValidationError as error:
        raise InvalidSuiteError(structural_issues(error, PlannerSettings), path) from None


def plan_suite(suite_path: str, settings: PlannerSettings) -> tuple[str, list[RunPlan]]:
    """Plan every test of a suite, each on its own subnet chosen offline, as concurrent runs would get them; the
    subnets are the ones validation checked (`assign_subnets`).

    Raises CliError when the file cannot be read, and InvalidSuiteError when the suite is invalid, a test cannot be
    planned or its address space has no subnet left for it (validation refuses those; this is the backstop)."""
    suite = load_suite(_read(suite_path), suite_path, settings)
    subnets, issues = assign_subnets([suite.target_of(test) for test in suite.tests], settings)
    if issues:
        raise InvalidSuiteError(issues, suite_path)
    plans = []
    for index, test in enumerate(suite.tests):
        path = f"tests[{index}]"
        try:
            plans.append(plan_run(test, suite.target_of(test), subnets[index], settings, generate_password, path))
        except PlanningError as error:
            raise InvalidSuiteError([error.issue], suite_path) from None
        except SubnetError as error:
            raise InvalidSuiteError([Issue(path, str(error))], suite_path) from None
    return suite.name, plans


def _machine_row(machine: Machine) -> tuple[str, ...]:
    hardware = machine.hardware
    return (
        machine.name,
        str(machine.role),
        machine.ip,
        f"{hardware.cores}c/{hardware.memory_gb}G/{hardware.disk_gb}G",
        ", ".join(str(container.kind) for container in machine.containers),
    )


def render_table(suite_name: str, plans: list[RunPlan]) -> str:
    lines = [f"suite {suite_name}: {len(plans)} test(s)"]
    for plan in plans:
        connection = plan.connection
        lines += [
            "",
            f"test {plan.test_name}  target={plan.target}  subnet={plan.subnet}  "
            f"connect={connection.host}:{connection.port}/{connection.dbname} as {connection.user}",
        ]
        rows = [("MACHINE", "ROLE", "IP", "HARDWARE", "CONTAINERS"), *map(_machine_row, plan.machines)]
        lines += ["  " + line for line in aligned(rows)]
    return "\n".join(lines)


def render_json(suite_name: str, plans: list[RunPlan]) -> str:
    document = {"suite": suite_name, "tests": [plan.model_dump(mode="json") for plan in plans]}
    return json.dumps(document, indent=2)


def _validate(args: argparse.Namespace) -> int:
    settings = _load_settings(args.settings)
    suite = load_suite(_read(args.file), args.file, settings)
    print(f"{args.file}: suite {suite.name} is valid ({len(suite.tests)} test(s))")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    name, plans = plan_suite(args.file, _load_settings(args.settings))
    print(render_json(name, plans) if args.format == "json" else render_table(name, plans))
    return EXIT_OK


def _stroppy_pin(args: argparse.Namespace) -> int:
    from infra.settings import OrchestrationSettings  # noqa: PLC0415 - only this command reads the master's settings
    from infra.stroppy_release import ReleaseError, pin, release_url  # noqa: PLC0415

    settings = OrchestrationSettings()
    lock = Path(args.lock) if args.lock else settings.release_lock
    url = args.url or release_url(settings.release_url, args.version)
    try:
        release = pin(args.version, url, lock, timeout_s=settings.install_timeout_s)
    except ReleaseError as error:
        raise CliError(str(error)) from None
    print(f"pinned stroppy {release.version}: sha256 {release.sha256} from {release.url} in {lock}")
    return EXIT_OK


def _setup(args: argparse.Namespace) -> int:
    from pydantic import ValidationError  # noqa: PLC0415

    from flows.setup import SetupConfig, setup  # noqa: PLC0415
    from infra.settings import OrchestrationSettings  # noqa: PLC0415

    data = parse_document(_read(args.config), args.config) if args.config else {}
    if not isinstance(data, dict):
        raise CliError(
            f"{args.config}: expected a mapping with sections redis, grafana, s3, yandex_cloud, docker, registry"
        )
    try:
        config = SetupConfig(**data)
        lines = setup(config, OrchestrationSettings())
    except ValidationError as error:
        raise InvalidSuiteError(structural_issues(error, SetupConfig), args.config or "environment") from None
    except ValueError as error:
        raise CliError(str(error)) from None
    for line in lines:
        print(f"{line.kind:<10}  {line.name:<32}  {line.outcome}")
    return EXIT_OK


def _up(args: argparse.Namespace) -> int:
    from flows.operate import render_status, stack, status  # noqa: PLC0415
    from infra.settings import OrchestrationSettings  # noqa: PLC0415

    del args
    if stack("start") != 0:
        return EXIT_FAILED
    components = status(OrchestrationSettings())
    print(render_status(components))
    return EXIT_OK if all(component.up for component in components) else EXIT_FAILED


def _down(args: argparse.Namespace) -> int:
    from flows.operate import stack  # noqa: PLC0415

    del args
    return EXIT_OK if stack("stop") == 0 else EXIT_FAILED


def _status(args: argparse.Namespace) -> int:
    from flows.operate import render_status, status  # noqa: PLC0415
    from infra.settings import OrchestrationSettings  # noqa: PLC0415

    del args
    components = status(OrchestrationSettings())
    print(render_status(components))
    return EXIT_OK if all(component.up for component in components) else EXIT_FAILED


def _run(args: argparse.Namespace) -> int:
    from flows.operate import submit_suite  # noqa: PLC0415

    settings = _load_settings(None)
    text = _read(args.file)
    load_suite(text, args.file, settings)
    return submit_suite(parse_document(text, args.file), timeout_s=args.timeout, poll_s=args.poll)


def _regressions(args: argparse.Namespace) -> int:
    from flows.regressions_command import regressions  # noqa: PLC0415

    try:
        import scipy.special  # noqa: F401, PLC0415 - the one part of the `history` extra the decision needs
    except ModuleNotFoundError as error:
        raise OperateError(
            f"it needs the `history` extra ({error.name} is not installed): `uv sync --extra history`"
        ) from error
    return regressions(args.input, _max_input_bytes())


def _runs(args: argparse.Namespace) -> int:
    from flows.keep import live_runs, render_runs  # noqa: PLC0415
    from infra.settings import OrchestrationSettings  # noqa: PLC0415

    del args
    print(render_runs(live_runs(OrchestrationSettings())))
    return EXIT_OK


def _release(args: argparse.Namespace) -> int:
    from flows.keep import release_run  # noqa: PLC0415
    from infra.settings import OrchestrationSettings  # noqa: PLC0415

    report = release_run(args.run, OrchestrationSettings())
    print(f"released {args.run}: {report.model_dump_json()}")
    return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    from flows.history_command import history  # noqa: PLC0415 - the store and Prefect load only for this command
    from stroppy_domain.model import RegressionRule  # noqa: PLC0415

    try:
        rule = RegressionRule.model_validate(
            {"metric": args.metric, "aggregate": args.aggregate, "max_drop": args.max_drop,
             "higher_is_better": not args.lower_is_better}
        )  # fmt: skip
    except ValidationError as error:
        raise InvalidSuiteError(structural_issues(error, RegressionRule), "history options") from None
    print(history(args.test, rule, args.format == "json"))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stroppy-flows", description="Benchmark PostgreSQL topologies with stroppy.")
    commands = parser.add_subparsers(dest="command", required=True)
    settings_help = "YAML file with planner settings (images, address_spaces, host_capacity); defaults are built in"

    validate = commands.add_parser("validate", help="check a suite file and print every problem in it")
    validate.add_argument("file", help="suite file, YAML or JSON")
    validate.add_argument("--settings", help=settings_help)
    validate.set_defaults(handler=_validate)

    plan = commands.add_parser("plan", help="show the machines, IPs and containers of every test of a suite")
    plan.add_argument("file", help="suite file, YAML or JSON")
    plan.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    plan.add_argument("--settings", help=settings_help)
    plan.set_defaults(handler=_plan)

    add_worker_commands(commands)

    run = commands.add_parser(
        "run", help="run a suite through the stroppy-test-suite deployment, showing each test's steps and results"
    )
    run.add_argument("file", help="suite file, YAML or JSON")
    run.add_argument("--timeout", type=float, default=6 * 3600, help="stop following after S seconds (default 6 h)")
    run.add_argument("--poll", type=float, default=1.0, help="seconds between progress checks (default: 1)")
    run.set_defaults(handler=_run)

    setup = commands.add_parser(
        "setup", help="create the work pools, register the block types, save blocks from --config or the environment"
    )
    setup.add_argument(
        "--config",
        help="YAML with sections redis, grafana, s3, yandex_cloud, docker, registry (see docs/operations.md)",
    )
    setup.set_defaults(handler=_setup)

    commands.add_parser(
        "up", help="start the local stack (Redis, VictoriaMetrics, Docker engine, images, Prefect, master worker)"
    ).set_defaults(handler=_up)
    commands.add_parser("down", help="stop what `up` started").set_defaults(handler=_down)
    commands.add_parser("status", help="check each part of the installation; exit 1 when any is down").set_defaults(
        handler=_status
    )

    regressions = commands.add_parser(
        "regressions", help="judge the last run of each history in a JSON file; exit 1 when any is a regression"
    )
    regressions.add_argument("--input", required=True, help="a history, or a JSON list of them (docs/results.md)")
    regressions.set_defaults(handler=_regressions)

    runs = commands.add_parser("history", help="list a test's runs per fingerprint and where changes began")
    runs.add_argument("test", help="the test's name")
    runs.add_argument("--metric", default="tps", help="the metric to follow (default tps)")
    runs.add_argument("--aggregate", default="value", help="which of its values (default value; p(95), avg, ...)")
    runs.add_argument("--max-drop", default="5%", help="the smallest change that counts (default 5%%)")
    runs.add_argument("--lower-is-better", action="store_true", help="for latencies: a rise is the worsening")
    runs.add_argument("--format", choices=["table", "json"], default="table")
    runs.set_defaults(handler=_history)

    _add_run_commands(commands)

    stroppy = commands.add_parser("stroppy", help="manage the pinned stroppy releases")
    stroppy_commands = stroppy.add_subparsers(dest="stroppy_command", required=True)
    pin_release = stroppy_commands.add_parser("pin", help="download a release once and record its sha256")
    pin_release.add_argument("version", help="release tag, e.g. v5.0.0")
    pin_release.add_argument("--url", help="download URL (default: STROPPY_RELEASE_URL with the version filled in)")
    pin_release.add_argument("--lock", help="lock file (default: STROPPY_RELEASE_LOCK, stroppy.lock.json)")
    pin_release.set_defaults(handler=_stroppy_pin)
    return parser


def _add_run_commands(commands: Any) -> None:
    """`runs` and `release`: the runs that hold machines, and tearing one down early."""
    runs = commands.add_parser("runs", help="list the runs that hold machines: live, kept after a failure, or left")
    runs.set_defaults(handler=_runs)
    release = commands.add_parser("release", help="tear down a run kept after its failure (or left) now")
    release.add_argument("run", help="the run's id, as `runs` lists it")
    release.set_defaults(handler=_release)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_local_auth()
    try:
        return args.handler(args)
    except InvalidSuiteError as error:
        print(error, file=sys.stderr)
    except CliError as error:
        print(error, file=sys.stderr)
    except OperateError as error:
        print(f"stroppy-flows {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except ValidationError as error:  # the installation's settings, read from the environment (STROPPY_*)
        print(InvalidSuiteError(structural_issues(error, BaseModel), f"settings {error.title}"), file=sys.stderr)
    except StroppyError as error:
        # The project's errors that are ValueErrors (planning, subnets, rendering, ...) are about the input;
        # the others (a service, a download, a target) are operational.
        print(f"stroppy-flows {args.command}: {printable(str(error), REPORT_CHARS)}", file=sys.stderr)
        return EXIT_INVALID if isinstance(error, ValueError) else EXIT_FAILED
    return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
