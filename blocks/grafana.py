"""Where Grafana is, and the token stroppy-flows uses to provision dashboards and annotate runs."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class GrafanaConnection(Block):
    """A Grafana organisation. Runs link to its dashboards only when the master is given such a block."""

    _block_type_name = "Stroppy Grafana Connection"
    _description = "Grafana that shows stroppy-flows' run dashboards (VictoriaMetrics datasource, run annotations)."

    url: str = Field(description="Grafana's base URL as its users open it, e.g. https://grafana.example.com.")
    token: SecretStr = Field(description="Service-account token with rights to edit the folder and its dashboards.")
    folder: str = Field(default="Stroppy", description="Title of the folder the dashboards are kept in.")
    datasource_url: str = Field(
        default="http://127.0.0.1:8428", description="VictoriaMetrics' URL as the Grafana server reaches it."
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="Timeout of every Grafana API call.")
