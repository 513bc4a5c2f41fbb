"""Terraform, run for one run at a time: a working directory per run under a persisted root, bounded commands with
a clean environment, credentials only in that environment, and output with the credentials masked.

`python_terraform` builds the command lines; they run through `infra.processes.run_bounded`, because its own `cmd`
can neither bound a command's time nor choose its environment. Nothing here runs or imports anything until a cloud
run applies or destroys: a Docker-only installation never needs the `terraform` binary.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from infra.processes import run_bounded
from stroppy_domain.errors import StroppyError

VARIABLES_FILE = "terraform.tfvars.json"
STATE_FILE = "terraform.tfstate"
MASK = "****"
MIN_SECRET_LENGTH = 4

logger = logging.getLogger("stroppy.terraform")


class TerraformSettings(BaseModel):
    binary: str = Field(default="terraform", description="The terraform executable (a path, or a name on PATH).")
    state_root: Path = Field(description="Runs' working directories and local state; must survive a restart.")
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG", "TRACE"] = Field(default="WARN", description="TF_LOG.")
    apply_timeout_s: float = Field(default=1800, gt=0)
    destroy_timeout_s: float = Field(default=1200, gt=0)
    init_timeout_s: float = Field(default=300, gt=0)
    plugin_cache_dir: Path | None = Field(default=None, description="TF_PLUGIN_CACHE_DIR, shared by runs.")


class TerraformError(StroppyError):
    """A terraform command failed or ran past its bound; the message names the run and has the output's tail."""


class TerraformRunner:
    """Applies and destroys one module per run. Apply and destroy get the same environment from the caller."""

    def __init__(
        self,
        module_dir: Path,
        settings: TerraformSettings,
        credentials: dict[str, str],
        log: Callable[[str], None] = logger.info,
        environment: dict[str, str] | None = None,
    ) -> None:
        """`credentials` are masked in every line logged or raised; `environment` holds the rest (ids, zones)."""
        self.module_dir = module_dir
        self.settings = settings
        self._credentials = credentials
        self._plain_environment = environment or {}
        # A multi-line secret (a key file) may be echoed one line at a time, so each of its lines is masked too.
        pieces = {piece.strip() for value in credentials.values() for piece in [value, *value.splitlines()]}
        self._secrets = sorted((p for p in pieces if len(p) >= MIN_SECRET_LENGTH), key=len, reverse=True)
        self._log = log

    def workdir(self, run_id: str) -> Path:
        return self.settings.state_root / run_id

    def runs(self) -> list[str]:
        """Runs with a working directory under the state root (what destroy can still act on)."""
        root = self.settings.state_root
        return sorted(path.parent.name for path in root.glob(f"*/{VARIABLES_FILE}")) if root.is_dir() else []

    def apply(self, run_id: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Create or converge the run's resources; returns the module's outputs. Idempotent: a retry converges.

        Raises TerraformError when `terraform init` or `apply` cannot start, fails, or runs past its bound."""
        workdir = self.workdir(run_id)
        workdir.mkdir(parents=True, exist_ok=True)
        for source in self.module_dir.glob("*.tf"):
            shutil.copyfile(source, workdir / source.name)
        variables_file = workdir / VARIABLES_FILE
        variables_file.touch(mode=0o600)
        variables_file.write_text(json.dumps(variables, indent=1))
        self._run(run_id, "init", self.settings.init_timeout_s)
        self._run(run_id, "apply", self.settings.apply_timeout_s)
        return self.outputs(run_id)

    def outputs(self, run_id: str) -> dict[str, Any]:
        state = self.workdir(run_id) / STATE_FILE
        if not state.is_file():
            return {}
        return {name: output["value"] for name, output in json.loads(state.read_text()).get("outputs", {}).items()}

    def destroy(self, run_id: str) -> bool:
        """Destroy what the run's state holds, then forget its working directory; False when there was none.

        Raises TerraformError when `terraform init` or `destroy` cannot start, fails, or runs past its bound."""
        workdir = self.workdir(run_id)
        if not (workdir / VARIABLES_FILE).is_file():
            shutil.rmtree(workdir, ignore_errors=True)
            return False
        self._run(run_id, "init", self.settings.init_timeout_s)
        self._run(run_id, "destroy", self.settings.destroy_timeout_s)
        shutil.rmtree(workdir)
        return True

    def _command(self, command: str) -> list[str]:
        from python_terraform import IsFlagged, Terraform  # noqa: PLC0415 - only cloud runs need it

        builder = Terraform(terraform_bin_path=self.settings.binary)
        if command == "init":
            return builder.generate_cmd_string("init", input=False, no_color=IsFlagged)
        return builder.generate_cmd_string(
            command, input=False, no_color=IsFlagged, auto_approve=IsFlagged, var_file=VARIABLES_FILE, parallelism=10
        )

    def _environment(self) -> dict[str, str]:
        env = {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "TF_LOG": self.settings.log_level}
        if self.settings.plugin_cache_dir is not None:
            self.settings.plugin_cache_dir.mkdir(parents=True, exist_ok=True)
            env["TF_PLUGIN_CACHE_DIR"] = str(self.settings.plugin_cache_dir)
        return env | self._plain_environment | self._credentials

    def _masked(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def _run(self, run_id: str, command: str, timeout_s: float) -> None:
        argv = self._command(command)
        try:
            result = run_bounded(
                argv, self._environment(), self.workdir(run_id), timeout_s, lambda line: self._log(self._masked(line))
            )
        except OSError as error:
            raise TerraformError(
                f"terraform {command} for {run_id}: cannot start {self.settings.binary}: {error}"
            ) from error
        if result.timed_out:
            problem = f"ran past its bound of {timeout_s:.0f} s"
        elif result.exit_code != 0:
            problem = f"failed (exit {result.exit_code})"
        else:
            return
        tail = self._masked("\n".join(result.tail[-15:]))
        raise TerraformError(f"terraform {command} for {run_id} {problem}:\n{tail}")
