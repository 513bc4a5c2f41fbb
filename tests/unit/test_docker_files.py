"""How configuration files are handed to service containers: ownership and modes in the archive."""

from __future__ import annotations

import io
import tarfile

import pytest
from pydantic import SecretStr

from infra.containers import service_archive
from infra.targets.base import LABEL_EXPIRES_AT, LABEL_RUN_ID, TargetError
from infra.targets.docker.backend import _inventory
from stroppy_domain.plan import ConfigFile, Container, HealthCheck, SecretFile, ServiceKind, StartStage


def container(user: str) -> Container:
    return Container(
        kind=ServiceKind.POSTGRES,
        image="example/db:1",
        command=["postgres"],
        user=user,
        files=[ConfigFile(path="/etc/stroppy/postgres/start.sh", content="#!/bin/sh\n", mode=0o755)],
        secret_files=[SecretFile(path="/etc/stroppy/postgres/pgpass", content=SecretStr("h:5432:*:u:pw\n"))],
        health_check=HealthCheck(command=["true"]),
        start_stage=StartStage.PRIMARY,
    )


def test_secret_files_belong_to_the_service_user_alone() -> None:
    with tarfile.open(fileobj=io.BytesIO(service_archive(container("postgres"), {"postgres": 999}))) as archive:
        members = {member.name: member for member in archive.getmembers()}
        content = archive.extractfile(members["etc/stroppy/postgres/pgpass"]).read()
    directories = {name for name, member in members.items() if member.isdir()}
    assert directories == {"etc", "etc/stroppy", "etc/stroppy/postgres"}
    script, secret = members["etc/stroppy/postgres/start.sh"], members["etc/stroppy/postgres/pgpass"]
    assert (script.mode, script.uid) == (0o755, 0)
    assert (secret.mode, secret.uid, secret.gid) == (0o600, 999, 999)
    assert content == b"h:5432:*:u:pw\n"


def test_an_undeclared_account_is_refused() -> None:
    with pytest.raises(TargetError, match="does not declare account 'postgres'"):
        service_archive(container("postgres"), {"root": 0})


def test_inventory_groups_resources_by_run() -> None:
    labelled = [
        {"stroppy.run_id": "r1", "stroppy.machine": "m1", "stroppy.expires_at": "2026-11-26T20:00:00+00:00"},
        {"stroppy.run_id": "r1", "stroppy.machine": "m2", "stroppy.expires_at": "2026-11-26T20:00:00+00:00"},
        {"stroppy.run_id": "r1", "stroppy.expires_at": "2026-11-26T20:00:00+00:00"},
        {"stroppy.run_id": "r0"},
        {"unrelated": "x"},
    ]
    inventory = _inventory(labelled)
    assert [(item.run_id, item.machines, item.resources) for item in inventory] == [
        ("r0", [], 1),
        ("r1", ["m1", "m2"], 3),
    ]
    assert inventory[1].expires_at.isoformat() == "2026-11-26T20:00:00+00:00"
    assert inventory[0].expires_at is None


def test_a_malformed_expiry_label_leaves_the_run_to_its_other_evidence() -> None:
    """One foreign or damaged label must not stop a reaper's whole inventory."""
    labelled = [
        {LABEL_RUN_ID: "run-a", LABEL_EXPIRES_AT: "not a time"},
        {LABEL_RUN_ID: "run-b", LABEL_EXPIRES_AT: "2026-01-01T00:00:00+00:00"},
    ]
    runs = {run.run_id: run for run in _inventory(labelled)}
    assert runs["run-a"].expires_at is None
    assert runs["run-b"].expires_at is not None and runs["run-b"].expires_at.year == 2026
