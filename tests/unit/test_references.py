"""The generated references: current on disk, complete by construction, and right about what is required."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from stroppy_domain.model import BenchmarkTest, StroppyCli, Suite
from tests.conftest import REPO


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_references", REPO / "scripts" / "generate_references.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = _generator()


def _rows(text: str, section: str) -> dict[str, list[str]]:
    """The table rows of one `## section` of a reference, by their first cell without backticks."""
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in body.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells
    return rows


def _written_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_the_files_on_disk_are_what_the_generator_writes() -> None:
    stale = generator.stale(generator.references())
    assert not stale, "stale references; run `uv run --frozen python scripts/generate_references.py`:\n" + "".join(
        stale
    )


def test_check_reports_a_difference_as_a_diff(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("old line\n")
    (message,) = generator.stale({page: "new line\n"})
    assert "-old line" in message
    assert "+new line" in message
    assert generator.stale({page: "old line\n"}) == []


@pytest.mark.parametrize("model", [Suite, BenchmarkTest, StroppyCli])
def test_every_field_of_the_main_models_has_its_row(model: type[BaseModel]) -> None:
    rows = _rows(generator.SUITE_REFERENCE.read_text(), model.__name__)
    assert set(rows) == _written_names(model)


def test_every_model_of_a_suite_has_its_section() -> None:
    text = generator.SUITE_REFERENCE.read_text()
    for model in generator.walk_models(Suite):
        assert set(_rows(text, model.__name__)) == _written_names(model), model.__name__


def test_the_load_rows_say_what_the_model_says() -> None:
    rows = _rows(generator.SUITE_REFERENCE.read_text(), "StroppyCli")
    assert rows["driver"][1:3] == [r"`stroppy` \| `pgbench`", "`stroppy`"]
    assert rows["clients"][1:3] == ["integer", "`4`"]
    assert "1 to 10000" in rows["clients"][3]
    assert rows["version"][2] == "absent"
    assert rows["duration"][1:3] == ["duration", "`5m`"]


def test_aliases_are_shown_as_users_write_them() -> None:
    rows = _rows(generator.SUITE_REFERENCE.read_text(), "ThresholdRule")
    assert {"abortOnFail", "delayAbortEval"} <= set(rows)


def test_every_setting_has_its_variable() -> None:
    text = generator.SETTINGS_REFERENCE.read_text()
    for title, reference in generator.SETTINGS_MODELS:
        model = generator.load_model(reference)
        variables = {f"STROPPY_{name.upper()}" for name in model.model_fields}
        assert set(_rows(text, title)) == variables, reference


def test_defaults_under_the_checkout_are_shown_relative_to_it() -> None:
    assert generator.value_text(generator.REPOSITORY / ".state" / "results") == "`.state/results`"
    assert generator.value_text(Path("/var/lib/stroppy")) == "`/var/lib/stroppy`"
    assert str(generator.REPOSITORY) not in generator.SETTINGS_REFERENCE.read_text()


@pytest.mark.parametrize(("seconds", "text"), [(300, "5m"), (5400, "1h30m"), (604800, "168h"), (90, "1m30s")])
def test_durations_are_written_as_users_write_them(seconds: int, text: str) -> None:
    assert generator.duration_text(seconds) == text
