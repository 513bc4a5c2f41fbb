"""Where Grafana is, and the token stroppy-flows uses to provision dashboards and annotate runs."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

if TYPE_CHECKING:
    from grafana_client import GrafanaApi


class GrafanaConnection(Block):
    """A Grafana organisation. Runs link to its dashboards only when the master is given such a block.

    Examples:
        Check that Grafana answers, with the saved URL, token and timeout:
        ```python
        from blocks.grafana import GrafanaConnection

        grafana_connection = GrafanaConnection.load("BLOCK_NAME")
        print(grafana_connection.get_client().health.check())
        ```
    """

    _block_type_name = "Stroppy Grafana Connection"
    _description = "Grafana that shows stroppy-flows' run dashboards (VictoriaMetrics datasource, run annotations)."
    _documentation_url = HttpUrl("https://grafana.com/docs/grafana/latest/administration/service-accounts/")

    url: str = Field(description="Grafana's base URL as its users open it, e.g. https://grafana.example.com.")
    token: SecretStr = Field(description="Service-account token with rights to edit the folder and its dashboards.")
    folder: str = Field(default="Stroppy", description="Title of the folder the dashboards are kept in.")
    datasource_url: str = Field(
        default="http://127.0.0.1:8428", description="VictoriaMetrics' URL as the Grafana server reaches it."
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="Timeout of every Grafana API call.")

    def get_client(self) -> GrafanaApi:
        """A grafana-client `GrafanaApi` for `url`, authenticated with the token, every call bounded by `timeout_s`.

        Its `url` is the one given here, so links can be made from it. Nothing is called until the caller calls."""
        from grafana_client import GrafanaApi  # noqa: PLC0415 - the SDK loads only when a client is asked for

        return GrafanaApi.from_url(
            _with_trailing_slash(self.url), credential=self.token.get_secret_value(), timeout=self.timeout_s
        )


def _with_trailing_slash(url: str) -> str:
    """grafana-client appends `api` to the URL's path as it is: `/grafana` would become `/grafanaapi`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/"))
