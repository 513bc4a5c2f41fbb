"""The manifest: the database's facts as psql prints the facts query, the project's revision, the report's lines."""

from __future__ import annotations

import re

import pytest

from infra.revision import project_commit, project_version
from stroppy_domain.manifest import Manifest, ManifestError, parse_postgres_facts
from stroppy_domain.reports import run_markdown
from tests.unit.test_reports import facts

GOOD = '{"server_version" : "17.6 (Debian 17.6-1)", "settings" : {"max_connections" : "200", "port" : "5432"}}\n'


def test_the_facts_query_output_is_read() -> None:
    assert parse_postgres_facts(GOOD) == ("17.6 (Debian 17.6-1)", {"max_connections": "200", "port": "5432"})
    assert parse_postgres_facts('{"server_version": "16.4", "settings": {}}') == ("16.4", {})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not JSON"),
        ("ERROR: permission denied", "not JSON"),
        ('["17.6"]', "no server_version"),
        ('{"settings": {}}', "no server_version"),
        ('{"server_version": "17.6"}', "no settings object"),
        ('{"server_version": "17.6", "settings": {"port": 5432}}', "no settings object"),
    ],
)
def test_what_is_not_the_facts_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ManifestError, match=problem):
        parse_postgres_facts(text)


def test_the_project_revision_is_this_checkout() -> None:
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", project_commit())
    assert project_version() == "0.1.0"


def test_the_report_lists_what_really_ran() -> None:
    manifest = Manifest(
        postgres_version="17.6", postgres_settings={"shared_buffers": "32768"}, project_version="0.1.0",
        project_commit="abc", load_tool_sha256="f" * 64, image_ids={"db:1": "sha256:0a1b"},
    )  # fmt: skip
    markdown = run_markdown(facts(manifest=manifest, images=["db:1", "edge:1"]))
    assert "- image: `db:1` (`sha256:0a1b`)" in markdown and "- image: `edge:1`\n" in markdown
    assert "- stroppy-flows: `0.1.0` at `abc`" in markdown and f"`{'f' * 64}`" in markdown
    assert "| `shared_buffers` | `32768` |" in markdown
    missing = manifest.model_copy(update={"facts_error": "the load wrote no postgres.json"})
    assert "- database facts: none (the load wrote no postgres.json)" in run_markdown(facts(manifest=missing))
