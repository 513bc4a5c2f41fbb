"""Write the dashboards' JSON files that compose.yaml provisions Grafana from (`uv run --frozen python -m
infra.grafana`), as `infra.grafana.boards` builds them; files of dashboards no longer built are removed."""

from infra.grafana.boards import DASHBOARDS_DIR, dashboard_files

files = dashboard_files()
for stale in set(DASHBOARDS_DIR.glob("*.json")) - set(files):
    stale.unlink()
for path, text in files.items():
    path.write_text(text)
