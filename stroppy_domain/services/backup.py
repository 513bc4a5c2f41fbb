"""A scheduled pg_dump of the machine's own database into a local directory, run by cron."""

from __future__ import annotations

from pydantic import SecretStr

from stroppy_domain.errors import PlanningError, join_path
from stroppy_domain.layout import MachineLayout, ServiceSlot
from stroppy_domain.model import Backup, BackupTool
from stroppy_domain.plan import ConfigFile, Container, HealthCheck, SecretFile, ServiceKind, StartStage
from stroppy_domain.services.common import (
    APP_DATABASE,
    APP_USER,
    CONF_DIR,
    POSTGRES_PORT,
    ServiceContext,
    bin_dir,
    pgpass_line,
    settings_for,
)
from stroppy_domain.services.templating import render_template

_CONF_DIR = f"{CONF_DIR}/backup"


def render_backup(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """The backup container: cron runs the dump script on the configured schedule, logging next to the dumps.

    Raises PlanningError when the test has no database template, or no backup here, or one other than pg_dump to
    local storage."""
    credentials = context.require_credentials()
    backup = _configured_backup(context)
    if backup is None:
        raise PlanningError(slot.source, "no backup is configured here")
    if backup.tool is not BackupTool.PG_DUMP:
        raise PlanningError(join_path(slot.source, "tool"), "only pg_dump backups can be planned so far", backup.tool)
    if backup.storage.local is None:
        raise PlanningError(join_path(slot.source, "storage"), "only local backup storage can be planned so far")
    settings, _ = settings_for(machine, context)
    directory = backup.storage.local.path.rstrip("/")
    script = render_template(
        "backup.sh",
        directory=directory,
        conf_dir=_CONF_DIR,
        bin_dir=bin_dir(settings.version),
        port=POSTGRES_PORT,
        user=APP_USER,
        database=APP_DATABASE,
        prefix=f"{APP_DATABASE}-{machine.name}",
        # find counts whole minutes; a retention under a minute still keeps dumps for one rather than none.
        retention_minutes=max(1, backup.retention // 60),
    )
    crontab = render_template("backup.cron", schedule=backup.schedule, conf_dir=_CONF_DIR, directory=directory)
    return Container(
        kind=ServiceKind.BACKUP,
        image=context.images.backup,
        command=["cron", "-f"],
        user="root",
        files=[
            ConfigFile(path=f"{_CONF_DIR}/backup.sh", content=script, mode=0o755),
            ConfigFile(path="/etc/cron.d/stroppy-backup", content=crontab),
        ],
        secret_files=[
            SecretFile(
                path=f"{_CONF_DIR}/pgpass",
                content=SecretStr(pgpass_line("127.0.0.1", POSTGRES_PORT, APP_DATABASE, APP_USER, credentials.app)),
            )
        ],
        volumes=[directory],
        health_check=HealthCheck(command=["pgrep", "-x", "cron"]),
        start_stage=StartStage.FRONTENDS,
    )


def _configured_backup(context: ServiceContext) -> Backup | None:
    """The backup settings of the test's instance or cluster, if it has any."""
    database = context.test.database
    if database.instance is not None:
        return database.instance.sidecars.backup
    if database.cluster is not None:
        return database.cluster.addons.backup
    return None
