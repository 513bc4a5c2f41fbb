"""The manifest: the database's facts as psql prints the facts query, the project's revision, the report's lines."""

from __future__ import annotations

import hashlib
import re

import pytest

from infra.revision import project_commit, project_version
from stroppy_domain.manifest import (
    VERSION_METRICS,
    VERSIONS_QUERY,
    Manifest,
    ManifestError,
    package_list,
    parse_postgres_facts,
    service_versions,
)
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


def series(name: str, value: str = "1", **labels: str) -> dict:
    return {"metric": {"__name__": name, "machine": "m1", **labels}, "value": [1796103831, value]}


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (series("node_exporter_build_info", version="1.9.0", goversion="go1.24"), {"node_exporter on m1": "1.9.0"}),
        (series("postgres_exporter_build_info", version="0.17.1"), {"postgres_exporter on m1": "0.17.1"}),
        (series("pgbouncer_exporter_build_info", version="0.10.2"), {"pgbouncer_exporter on m1": "0.10.2"}),
        (series("pgbouncer_version_info", version="PgBouncer 1.24.1"), {"pgbouncer on m1": "1.24.1"}),
        (series("etcd_server_version", server_version="3.5.16"), {"etcd on m1": "3.5.16"}),
        (series("patroni_version", "040007", scope="stroppy"), {"patroni on m1": "4.0.7"}),
        (series("patroni_version", "30203"), {"patroni on m1": "3.2.3"}),
        (series("patroni_version", "not-a-number"), {}),
        (series("node_exporter_build_info"), {}),  # no version label: nothing to say
        (series("go_build_info", version="go1.24"), {}),  # not a service's version
    ],
    ids=lambda value: value["metric"]["__name__"] if isinstance(value, dict) and "metric" in value else None,
)
def test_each_service_reports_its_version_its_own_way(entry: dict, expected: dict[str, str]) -> None:
    assert service_versions([entry]) == expected


def test_the_versions_query_asks_for_every_version_series_of_the_run() -> None:
    query = VERSIONS_QUERY.format(run_id="run-1", window_s=600)
    assert query.startswith('last_over_time({__name__=~"') and query.endswith('", run_id="run-1"}[600s])')
    assert all(name in query for name in VERSION_METRICS)


def test_a_package_list_is_summarised_by_count_and_checksum() -> None:
    text = "libc6=2.41-12\npatroni=4.0.7-1\n\n"
    listed = package_list(text, "packages/db.txt")
    assert (listed.count, listed.file) == (2, "packages/db.txt")
    assert listed.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert package_list(text.replace("4.0.7-1", "4.0.8-1"), "x").sha256 != listed.sha256


def test_the_report_lists_the_services_versions_and_the_images_packages() -> None:
    manifest = Manifest(
        project_version="0.1.0", project_commit="abc", service_versions={"patroni on m1": "4.0.7"},
        load_tool_version="stroppy v5.7.3; k6 v1.1.0", load_tool_binary_sha256="e" * 64,
        image_packages={"db:1": package_list("a=1\nb=2\n", "packages/db_1.txt")},
    )  # fmt: skip
    markdown = run_markdown(facts(manifest=manifest))
    assert "- patroni on m1: `4.0.7`" in markdown
    assert f"- stroppy binary: `stroppy v5.7.3; k6 v1.1.0`, sha256 `{'e' * 64}`" in markdown
    assert "- packages of `db:1`: 2 (`packages/db_1.txt`, sha256 `" in markdown
