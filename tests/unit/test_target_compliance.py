"""Every target package implements the target interface: the module protocol the flows use, and a backend class
with every method of `TargetBackend`, each with the protocol's parameters."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest
import typing_extensions

from flows.run_steps import RunStep, run_steps
from infra.targets import PACKAGES, target_module
from infra.targets.base import TargetBackend, TargetError, TargetModule
from stroppy_domain.model import Target
from stroppy_domain.placement import plan_run
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.validation import validate_suite
from tests.conftest import fixed_passwords, fresh_suite

FLOWS = Path(__file__).resolve().parents[2] / "flows"


def protocol_members(protocol: type) -> list[str]:
    return sorted(typing_extensions.get_protocol_members(protocol))


def parameters(function: object, skip_self: bool) -> list[str]:
    names = list(inspect.signature(function).parameters)  # type: ignore[arg-type]
    return names[1:] if skip_self else names


def test_every_target_name_has_a_package() -> None:
    assert set(PACKAGES) == set(Target)


@pytest.mark.parametrize("name", list(PACKAGES), ids=str)
def test_the_package_implements_the_module_protocol(name: Target) -> None:
    module = target_module(name)
    assert isinstance(module, TargetModule)
    for member in protocol_members(TargetModule):
        actual = getattr(module, member)
        if member in TargetModule.__annotations__:
            assert isinstance(actual, bool), (name, member)
            continue
        wanted = parameters(getattr(TargetModule, member), skip_self=True)
        assert parameters(actual, skip_self=False)[: len(wanted)] == wanted, (name, member)


@pytest.mark.parametrize("name", list(PACKAGES), ids=str)
def test_the_backend_class_implements_every_backend_method(name: Target) -> None:
    backend_class = typing.get_type_hints(target_module(name).open_backend)["return"]
    for member in protocol_members(TargetBackend):
        implementation = getattr(backend_class, member, None)
        assert implementation is not None, f"{backend_class.__name__} lacks {member}"
        assert parameters(implementation, skip_self=True) == parameters(
            getattr(TargetBackend, member), skip_self=True
        ), (backend_class.__name__, member)


def test_an_unknown_target_is_refused_with_its_name() -> None:
    with pytest.raises(TargetError, match="'nowhere'"):
        target_module("nowhere")  # type: ignore[arg-type]


def test_the_flows_never_branch_on_a_targets_name() -> None:
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(FLOWS.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "Target.DOCKER" in line or "Target.YANDEX" in line
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("name", "agents_before_services"), [(Target.DOCKER, False), (Target.YANDEX_CLOUD, True)], ids=str
)
def test_a_run_waits_for_its_agents_before_its_services_only_where_they_start_the_services(
    name: Target, agents_before_services: bool
) -> None:
    steps = run_steps(name)
    assert sorted(steps) == sorted(RunStep)
    assert (steps.index(RunStep.WAIT_FOR_AGENTS) < steps.index(RunStep.START_SERVICES)) == agents_before_services
    assert steps.index(RunStep.CREATE_MACHINES) < min(
        steps.index(RunStep.WAIT_FOR_AGENTS), steps.index(RunStep.START_SERVICES)
    )


@pytest.mark.parametrize(("name", "every_machine"), [(Target.DOCKER, False), (Target.YANDEX_CLOUD, True)], ids=str)
def test_the_runner_runs_an_agent_and_other_machines_only_where_they_start_their_services(
    name: Target, every_machine: bool
) -> None:
    cluster = validate_suite(fresh_suite()).tests[1]
    plan = plan_run(cluster, name, "10.120.3.0/24", PlannerSettings(), fixed_passwords)
    assert len(plan.machines) > 2
    agents = [machine.name for machine in plan.agent_machines(target_module(name).SERVICES_NEED_AGENTS)]
    assert agents == ([machine.name for machine in plan.machines] if every_machine else [plan.runner.name])
