"""A scheduled pg_dump of the machine's own database into a local directory, run by cron."""

from __future__ import annotations

import posixpath

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
    rendering,
    settings_for,
)
from stroppy_domain.services.render import (
    cron_schedule,
    cron_word,
    crontab,
    pgpass_line,
    shell_in_double_quotes,
    shell_plain,
)
from stroppy_domain.services.templating import render_template

_CONF_DIR = f"{CONF_DIR}/backup"


def render_backup(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """The backup container: cron runs the dump script on the configured schedule, logging next to the dumps.

    Raises PlanningError when the test has no database template, or no backup here, or one other than pg_dump to
    local storage, or a schedule or directory that cannot be written into the crontab and the script."""
    credentials = context.require_credentials()
    backup = _configured_backup(context)
    if backup is None:
        raise PlanningError(slot.source, "no backup is configured here")
    if backup.tool is not BackupTool.PG_DUMP:
        raise PlanningError(join_path(slot.source, "tool"), "only pg_dump backups can be planned so far", backup.tool)
    if backup.storage.local is None:
        raise PlanningError(join_path(slot.source, "storage"), "only local backup storage can be planned so far")
    settings, _ = settings_for(machine, context)
    path = backup.storage.local.path
    path_source = join_path(slot.source, "storage", "local", "path")
    directory = _directory(path, path_source)
    with rendering(path_source, path):
        # The script quotes the directory itself ("$directory"); the crontab has it as a word of its own.
        script_directory, cron_directory = shell_in_double_quotes(directory), cron_word(directory)
    script = render_template(
        "backup.sh",
        directory=script_directory,
        conf_dir=shell_plain(_CONF_DIR),
        bin_dir=shell_plain(bin_dir(settings.version)),
        port=shell_plain(POSTGRES_PORT),
        user=shell_plain(APP_USER),
        database=shell_plain(APP_DATABASE),
        prefix=shell_plain(f"{APP_DATABASE}-{machine.name}"),
        # find counts whole minutes; a retention under a minute still keeps dumps for one rather than none.
        retention_minutes=shell_plain(max(1, backup.retention // 60)),
    )
    with rendering(join_path(slot.source, "schedule"), backup.schedule):
        schedule = cron_schedule(backup.schedule)
    with rendering(path_source, path):
        cron_file = crontab(
            render_template("backup.cron", schedule=schedule, conf_dir=shell_plain(_CONF_DIR), directory=cron_directory)
        )
    return Container(
        kind=ServiceKind.BACKUP,
        image=context.images.backup,
        command=["cron", "-f"],
        user="root",
        files=[
            ConfigFile(path=f"{_CONF_DIR}/backup.sh", content=script, mode=0o755),
            ConfigFile(path="/etc/cron.d/stroppy-backup", content=cron_file),
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


def _directory(path: str, source: str) -> str:
    """The backup directory without its trailing slash. It becomes a volume's mount point, so it must say plainly
    where that is: `..` could mount the volume over a system directory.

    Raises PlanningError at `source` for a relative path, the root, or one with '.', '..' or '//' in it."""
    directory = path.rstrip("/")
    if not directory.startswith("/") or posixpath.normpath(directory) != directory:
        raise PlanningError(source, "must be an absolute directory without '.', '..' or '//' in it", path)
    return directory


def _configured_backup(context: ServiceContext) -> Backup | None:
    """The backup settings of the test's instance or cluster, if it has any."""
    database = context.test.database
    if database.instance is not None:
        return database.instance.sidecars.backup
    if database.cluster is not None:
        return database.cluster.addons.backup
    return None
