"""The Prefect UI of the local control plane in headless Chromium (Debian's), driven by Playwright.

After a real run, the suite deployment's run page shows a form built from the suite model, and the run's report
artifact renders its verdict, thresholds and links. Screenshots land in .state/test-artifacts/ for people to look at.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from flows.suite import SuiteResult
from tests.conftest import REPO, api_headers
from tests.e2e.test_orchestration import INSTANCE, pgbench_test, run_suite

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis]

API_URL = os.environ["PREFECT_API_URL"]
UI_URL = API_URL.removesuffix("/api")
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / ".state" / "test-artifacts"
# Without the background-networking flags Chromium keeps calling Google's hosts, which this network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing; scripts/test.sh installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = browser.new_page(viewport={"width": 1400, "height": 1000})
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    if auth:  # what the UI's login form stores: it sends it with every API call
        opened.add_init_script(
            f"try {{ localStorage.setItem('prefect-password', btoa({json.dumps(auth)})) }} catch {{}}"
        )
    yield opened
    opened.close()


def _shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_the_suite_deployment_shows_a_form_of_the_suite_model(page: Page) -> None:
    deployment = httpx.get(
        f"{API_URL}/deployments/name/stroppy-test-suite/suite", headers=api_headers(), timeout=10
    ).json()
    page.goto(f"{UI_URL}/deployments/deployment/{deployment['id']}/run", timeout=WAIT_MS)
    labels = ("suite", "Name", "Description (Optional)", "Target (Optional)", "Tests", "Add item")
    for label in labels:  # the form renders its fields one by one; on a busy machine, some only after "Tests"
        page.get_by_text(label, exact=True).first.wait_for(timeout=WAIT_MS)
    body = page.inner_text("body")
    for label in labels:
        assert label in body, label
    assert page.get_by_text("docker", exact=True).count() >= 1, "the target's default, docker, is not shown"
    assert _shot(page, "suite-parameter-form").stat().st_size > 10_000


@pytest.fixture(scope="module")
def ui_suite() -> SuiteResult:
    """One real suite of one short run, for the UI and the suite's HTML report."""
    # Playwright's sync API keeps an event loop in this thread, where Prefect's sync calls would return coroutines.
    with ThreadPoolExecutor(max_workers=1) as pool:
        _, result = pool.submit(run_suite, [pgbench_test("ui-single", INSTANCE, duration=3)], None, 600).result()
    return result


def test_a_run_report_artifact_renders_in_the_ui(page: Page, ui_suite: SuiteResult) -> None:
    (outcome,) = ui_suite.outcomes
    assert outcome.state == "COMPLETED", outcome
    newest = {"artifacts": {"key": {"any_": ["run-ui-single"]}}, "sort": "CREATED_DESC", "limit": 1}
    (artifact,) = httpx.post(f"{API_URL}/artifacts/filter", json=newest, headers=api_headers(), timeout=10).json()
    assert artifact["description"] == f"{outcome.run_id}: PASSED"
    page.goto(f"{UI_URL}/artifacts/artifact/{artifact['id']}", timeout=WAIT_MS)
    page.get_by_role("heading", name="ui-single: PASSED").wait_for(timeout=WAIT_MS)
    for heading in ("Thresholds", "Key metrics", "Dashboards", "What ran"):
        assert page.get_by_role("heading", name=heading).count() == 1, heading
    link = page.get_by_role("link", name="Stroppy: run overview")
    assert link.get_attribute("href") == outcome.result.grafana_url
    assert _shot(page, "run-report-artifact").stat().st_size > 10_000


def test_the_suite_html_report_opens_offline_with_its_charts_drawn(page: Page, ui_suite: SuiteResult) -> None:
    assert ui_suite.report, ui_suite.report_error
    report = Path(ui_suite.report)
    assert report.is_file() and report.name == "report.html", report
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report.as_uri(), timeout=WAIT_MS)
    (outcome,) = ui_suite.outcomes
    page.get_by_role("heading", name="ui-single: PASSED").wait_for(timeout=WAIT_MS)
    run = page.locator(f"section.run[id='{outcome.run_id}']")
    charts = run.locator("svg.pygal-chart")
    titles = [charts.nth(index).locator("title").first.text_content() for index in range(charts.count())]
    assert titles[:2] == ["Throughput", "Latency"], titles
    for index in range(charts.count()):
        box = charts.nth(index).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, (titles[index], box)
        lines = charts.nth(index).locator("path.line.reactive")
        assert lines.count() >= 1, titles[index]
        drawn = lines.first.bounding_box()
        assert drawn and drawn["width"] > 100, (titles[index], drawn)  # a line across the run, not a dot
    assert page.locator("figure.trend svg.pygal-chart").count() == 1, "the history trend of ui-single"
    assert requests == [report.as_uri()], "the report fetched something: it must open offline"
    assert _shot(page, "suite-html-report").stat().st_size > 20_000
