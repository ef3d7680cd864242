"""The MLflow UI as a person sees it: `mlflow server` on 127.0.0.1 over the micro sweep's store,
opened in headless Chromium (Debian's, driven by Selenium). Screenshots land in the test's
temporary folder (printed)."""

import time
from pathlib import Path

import pytest

from .helpers import mlflow_server, runs_of

pytestmark = [pytest.mark.slow, pytest.mark.full]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def ensure_chromium() -> None:
    """Debian's chromium and its driver come with the project's setup (`make test`)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed (make test installs them)")


@pytest.fixture(scope="module")
def ui(micro_sweep):
    tmp_path, proc = micro_sweep
    assert proc.returncode == 0, proc.stderr[-2000:]
    with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as url:
        yield url, tmp_path


@pytest.fixture(scope="module")
def browser():
    ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def page_text(driver, url: str, *expected: str, timeout: float = 60) -> str:
    """Open `url` and wait until the page shows every string of `expected`."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    deadline = time.monotonic() + timeout
    while True:
        text = driver.find_element(By.TAG_NAME, "body").text
        if all(e in text for e in expected) or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def test_the_sweep_its_trials_a_metric_chart_and_the_plots_show_in_the_ui(ui, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, store = ui
    _, runs = runs_of(store)
    experiment = runs[0].info.experiment_id
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    child = next(r for r in runs if r.data.tags.get("kinfuse.trial") == "infuse-b-r0.8")
    shots = []

    def shot(name: str) -> None:
        shots.append(tmp_path / f"mlflow_ui_{name}.png")
        browser.save_screenshot(str(shots[-1]))

    # The home page lists the sweep's experiment.
    text = page_text(browser, f"{url}/#/experiments", "micro")
    shot("home")
    assert "micro" in text
    # The page the sweep prints: the experiment in the model-training view, its runs listed.
    printed = f"{url}/#/experiments/{experiment}?workflowType=machine_learning"
    text = page_text(browser, printed, f"{len(runs)} matching runs")
    shot("runs")
    assert f"{len(runs)} matching runs" in text and "Traces" not in text.split("matching")[0]
    # A click on the sweep's run opens it with the answer at the top, inside a 1,400 x 900
    # window: the recommendation (or why there is none) without scrolling or "Show more".
    browser.find_element(By.XPATH, f"//a[contains(@href, '{parent.info.run_id}')]").click()
    headline = "Recommended infusion ratio" if "recommended_ratio" in parent.data.metrics else (
        "No single ratio recommended")  # fmt: skip
    text = page_text(browser, browser.current_url, headline, "Full tables: answer.md")
    shot("sweep_run")
    shown = browser.find_element(By.XPATH, f"//*[contains(text(), '{headline}')]")
    top = browser.execute_script("return arguments[0].getBoundingClientRect().top", shown)
    assert 0 < top < browser.execute_script("return window.innerHeight"), top
    runs_page = f"{url}/#/experiments/{experiment}/runs"
    text = page_text(
        browser, f"{runs_page}/{child.info.run_id}/model-metrics", "infuse-b-r0.8 (retention)"
    )
    shot("trial_metrics")
    assert "infuse-b-r0.8 (retention)" in text and "infuse-b-r0.8 (acquisition)" in text

    page_text(browser, f"{runs_page}/{parent.info.run_id}/artifacts", "collapse_vs_size.png")
    browser.find_element(By.XPATH, "//*[text()='collapse_vs_size.png']").click()
    deadline = time.monotonic() + 30
    while not any(
        (img.get_attribute("src") or "").startswith("blob:") and img.size["width"] > 300
        for img in browser.find_elements(By.TAG_NAME, "img")
    ):
        assert time.monotonic() < deadline, "the collapse plot never rendered"
        time.sleep(0.5)
    shot("collapse_plot")
    print("screenshots:", *shots)
    assert all(s.stat().st_size > 20_000 for s in shots)
