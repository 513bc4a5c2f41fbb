"""Turn suite text into a `Suite`, or into one error that lists every problem with its path and value.

Four passes, each reporting everything it finds: the shape of the data (nesting, size; see parsing.py), the
structure (types, ranges, unknown keys), the rules that span several fields (Patroni needs etcd, etcd size matches
its placement, ...), and a trial plan of every test on the subnet `plan` gives it, so a suite that validates is one
the planner can lay out. The rules between fields run on every test, also beside structural errors: on a test that
did not validate, on the fields that did (see partial.py).
"""

from __future__ import annotations

import difflib
import ipaddress
import typing
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import islice
from typing import Any

from pydantic import BaseModel, ValidationError

from stroppy_domain.capacity import machine_demands, oversize_problem
from stroppy_domain.comparison import comparison_problems
from stroppy_domain.errors import (
    MAX_COLLECTED_ISSUES,
    InvalidSuiteError,
    Issue,
    PlanningError,
    join_path,
    sorted_issues,
)
from stroppy_domain.model import PATTERN_HINTS, BenchmarkTest, Isolation, Suite, Target
from stroppy_domain.parsing import data_issues, parse_document
from stroppy_domain.partial import field_value, known, salvaged, unwrap
from stroppy_domain.placement import lay_out, plan_run
from stroppy_domain.rules import test_issues
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.subnets import SubnetError, first_free_subnet, host_capacity

__all__ = ["assign_subnets", "load_suite", "parse_document", "structural_issues", "test_issues", "validate_suite"]


def load_suite(text: str, source: str = "", settings: PlannerSettings | None = None) -> Suite:
    """Parse and validate a suite; raises InvalidSuiteError listing every problem found."""
    return validate_suite(parse_document(text, source), source, settings)


def validate_suite(data: Any, source: str = "", settings: PlannerSettings | None = None) -> Suite:
    """Parsed suite data -> a `Suite`; raises InvalidSuiteError listing every problem found.

    Data nested deeper or larger than a suite file may be (see parsing.py) is refused before anything walks it."""
    settings = settings or PlannerSettings()
    shape = data_issues(data)
    if shape:
        raise InvalidSuiteError(shape, source)
    if not isinstance(data, dict):
        raise InvalidSuiteError([Issue("", "a suite must be a mapping with 'name' and 'tests'", data)], source)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as error:
        issues = structural_issues(error, Suite, MAX_COLLECTED_ISSUES)
        room = MAX_COLLECTED_ISSUES - len(issues)
        if room > 0:
            issues += islice(_issues_beside_structural_errors(data, settings), room)
        unlisted = max(0, error.error_count() - MAX_COLLECTED_ISSUES)
        raise InvalidSuiteError(sorted_issues(issues), source, unlisted) from None
    tests: list[object] = list(suite.tests)
    targets = [suite.target_of(test) for test in suite.tests]
    isolations = [suite.isolation_of(test) for test in suite.tests]
    issues = [Issue(join_path(*path), message, value) for path, message, value in comparison_problems(suite)]
    issues += islice(_tests_issues(tests, targets, settings, isolations), MAX_COLLECTED_ISSUES)
    if issues:
        raise InvalidSuiteError(sorted_issues(issues), source)
    return suite


def _issues_beside_structural_errors(data: dict[str, Any], settings: PlannerSettings) -> Iterator[Issue]:
    """Every other check of the tests of a suite that did not validate: each test's rules between the fields that
    validated, and for tests that validated whole, the trial plan too."""
    tests = data.get("tests")
    if not isinstance(tests, list):
        return
    suite_target = known(lambda: field_value(Suite, "target", data))
    targets = [known(partial(field_value, BenchmarkTest, "target", raw)) or suite_target for raw in tests]
    suite_isolation = known(lambda: field_value(Suite, "isolation", data)) or Isolation.EXCLUSIVE
    isolations = [known(partial(field_value, BenchmarkTest, "isolation", raw)) or suite_isolation for raw in tests]
    yield from _tests_issues(tests, targets, settings, isolations)


def _tests_issues(
    tests: Sequence[object],
    targets: Sequence[Target | None],
    settings: PlannerSettings,
    isolations: Sequence[Isolation],
) -> Iterator[Issue]:
    """The rules of each test, unique names, subnets for all, and a trial plan of each test without problems.

    `tests` are BenchmarkTests, or (beside structural errors) the raw data of tests; `targets` None where unknown."""
    subnets, subnet_issues = assign_subnets(targets, settings)
    yield from subnet_issues
    first_index: dict[str, int] = {}
    for index, raw in enumerate(tests):
        path = join_path("tests", index)
        name = raw.name if isinstance(raw, BenchmarkTest) else known(partial(field_value, BenchmarkTest, "name", raw))
        if name is not None and name in first_index:
            yield Issue(
                join_path(path, "name"), f"test names must be unique; tests[{first_index[name]}] has it too", name
            )
        if name is not None:
            first_index.setdefault(name, index)
        test = raw if isinstance(raw, BenchmarkTest) else salvaged(BenchmarkTest, raw)
        rule_issues = list(test_issues(test, path))
        yield from rule_issues
        target, subnet = targets[index], subnets.get(index)
        if isinstance(test, BenchmarkTest) and not rule_issues and target is not None and subnet is not None:
            yield from _trial_plan_issues(test, target, subnet, settings, path, isolations[index])


def assign_subnets(targets: Sequence[Target | None], settings: PlannerSettings) -> tuple[dict[int, str], list[Issue]]:
    """The subnet of each test (by index) when the whole suite is planned at once, as `plan` lays it out: in each
    address space the lowest free subnet, in test order; tests whose target is None take none. An issue names the
    first test of each address space that finds no subnet left, so validation refuses what planning cannot do."""
    members: dict[str, list[tuple[int, Target]]] = {}
    for index, target in enumerate(targets):
        if target is not None:
            members.setdefault(settings.address_space(target).base_cidr, []).append((index, target))
    subnets: dict[int, str] = {}
    issues: list[Issue] = []
    for base, tests in members.items():
        one_prefix = len({settings.address_space(target).prefix for _, target in tests}) == 1
        taken: list[str] = []
        for index, target in tests:
            prefix = settings.address_space(target).prefix
            try:
                # With one subnet size the lowest free subnet is the one after the last; computing it directly
                # keeps a suite of thousands of tests linear instead of rescanning every subnet taken so far.
                subnet = _after(taken[-1], base) if one_prefix and taken else first_free_subnet(base, prefix, taken)
            except SubnetError as error:
                issues.append(Issue(join_path("tests", index), _no_subnet_message(error, base, prefix, target, taken)))
                break
            taken.append(subnet)
            subnets[index] = subnet
    return subnets, issues


def _after(previous: str, base_cidr: str) -> str:
    """The subnet of the same size right after `previous`; raises SubnetError past the end of `base_cidr`."""
    network = ipaddress.IPv4Network(previous)
    base = ipaddress.IPv4Network(base_cidr)
    start = int(network.broadcast_address) + 1
    if start + network.num_addresses - 1 > int(base.broadcast_address):
        raise SubnetError(f"no free /{network.prefixlen} subnet left in {base_cidr}")
    return f"{ipaddress.IPv4Address(start)}/{network.prefixlen}"


def _no_subnet_message(error: SubnetError, base: str, prefix: int, target: Target, taken: list[str]) -> str:
    if not taken:
        return f"target {target}: {error}"
    return (
        f"no subnet left for this test: the address space {base} of target {target} holds "
        f"{2 ** max(0, prefix - ipaddress.IPv4Network(base).prefixlen)} subnets of /{prefix}, and the tests before "
        "it take them all; split the suite, or give the target a larger address space"
    )


def structural_issues(error: ValidationError, root: type[BaseModel], limit: int | None = None) -> list[Issue]:
    """Each error of `error` (the first `limit`) as an issue with its path, worded for a person."""
    issues = []
    for detail in error.errors()[:limit]:
        loc = tuple(detail["loc"])
        path = join_path(*loc)
        if detail["type"] == "missing":
            issues.append(Issue(path, "required field is missing"))
        elif detail["type"] == "extra_forbidden":
            issues.append(Issue(path, _unknown_field_message(root, loc), detail["input"]))
        else:
            pattern = (detail.get("ctx") or {}).get("pattern")
            hint = PATTERN_HINTS.get(pattern) if pattern is not None else None
            message = hint or detail["msg"].removeprefix("Value error, ")
            issues.append(Issue(path, message, detail["input"]))
    return issues


def _unknown_field_message(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    known = _field_names_at(root, loc[:-1])
    suggestion = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if suggestion:
        return f"unknown field; did you mean '{suggestion[0]}'?"
    return "unknown field" + (f"; expected one of: {', '.join(sorted(known))}" if known else "")


def _field_names_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Names the model accepts at `loc`, found by following the field annotations from `root`."""
    current: Any = root
    for part in loc:
        current = unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return []
    current = unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [field.alias or name for name, field in current.model_fields.items()]
    return []


def _trial_plan_issues(
    test: BenchmarkTest, target: Target, subnet: str, settings: PlannerSettings, path: str, isolation: Isolation
) -> Iterator[Issue]:
    """Plan the test on the subnet `plan` gives it, exactly as a run would, offline; and when the settings know the
    size of the target's host, check the test fits it."""
    prefix = settings.address_space(target).prefix
    try:
        layout = lay_out(test, path)
        host = settings.host_capacity.get(target)
        too_large = host and oversize_problem(
            machine_demands((machine.name, machine.hardware) for machine in layout.machines), isolation, host
        )
        if too_large:
            yield Issue(path, f"does not fit the {target} host: it {too_large}")
        machines = len(layout.machines)
        if machines > host_capacity(prefix):
            yield Issue(
                join_path(path, "database"),
                f"needs {machines} machines but a /{prefix} subnet of target {target} holds "
                f"{host_capacity(prefix)}; use a smaller topology or a larger subnet prefix",
            )
            return
        plan_run(test, target, subnet, settings, passwords=lambda purpose: purpose, path=path)
    except PlanningError as error:
        yield error.issue
    except SubnetError as error:
        yield Issue(join_path(path, "target"), str(error))
