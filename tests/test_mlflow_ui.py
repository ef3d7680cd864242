"""The MLflow UI as a person sees it: `mlflow server` on 127.0.0.1 over the store of the
session's fresh quickstart, opened in headless Chromium (Debian's, driven by Selenium).
Screenshots land in the test's temporary folder (printed)."""

import re
import time
from pathlib import Path

import pytest

from .helpers import mlflow_server, runs_of

pytestmark = pytest.mark.full

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TRIAL = "infuse-n56k-r0.83"  # a quickstart trial whose retention falls as it trains


def ensure_chromium() -> None:
    """Debian's chromium and its driver come with the project's setup (`make test`)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed (make test installs them)")


@pytest.fixture(scope="module")
def ui(quickstart):
    tmp_path, _ = quickstart  # the session's fresh quickstart, as a user browses it after
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
        text = " ".join(driver.find_element(By.TAG_NAME, "body").text.split())
        if all(e in text for e in expected) or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def click(driver, xpath: str, timeout: float = 60):
    """Click the element at `xpath` once the page shows it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    found = WebDriverWait(driver, timeout).until(
        expected_conditions.element_to_be_clickable((By.XPATH, xpath))
    )
    found.click()
    return found


def follow(driver, xpath: str, timeout: float = 60) -> None:
    """Follow the link at `xpath` as a click does (a click on a list that is still re-rendering
    can land on a node React then replaces)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    link = WebDriverWait(driver, timeout).until(
        expected_conditions.presence_of_element_located((By.XPATH, xpath))
    )
    driver.get(link.get_attribute("href"))


def close_assistant(driver) -> None:
    """Close the MLflow Assistant's panel, open on a first visit: it takes a third of the
    window."""
    from selenium.webdriver.common.by import By

    for close in driver.find_elements(By.XPATH, "//button[@aria-label='Close']"):
        close.click()
    time.sleep(1)


def test_the_sweep_its_trials_a_metric_chart_and_the_plots_show_in_the_ui(
    quickstart, ui, browser, tmp_path
):
    from selenium.webdriver.common.by import By

    url, store = ui
    _, printed_by_sweep = quickstart
    _, runs = runs_of(store, "quickstart")
    experiment = runs[0].info.experiment_id
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    child = next(r for r in runs if r.data.tags.get("kinfuse.trial") == TRIAL)
    shots = []

    def shot(name: str) -> None:
        shots.append(tmp_path / f"mlflow_ui_{name}.png")
        browser.save_screenshot(str(shots[-1]))

    # The page the sweep prints: the experiment in the model-training view, its runs listed
    # with the columns that matter (a saved view), no column picker needed.
    page = re.search(r"then open http://127\.0\.0\.1:5000(\S+)", printed_by_sweep.stdout)[1]
    assert page.startswith(f"/#/experiments/{experiment}/runs?"), page
    page_text(browser, url + page, f"{len(runs)} matching runs")
    close_assistant(browser)
    columns = ("retention", "acquisition", "val_loss", "recommended_ratio")
    text = page_text(browser, url + page, f"{len(runs)} matching runs", *columns)
    shot("runs")
    assert f"{len(runs)} matching runs" in text and "Run Name" in text  # the runs table
    assert all(column in text for column in columns), text[:2000]
    # A person from the home page: the model-training view (MLflow remembers it), the
    # experiment, then the sweep's run, whose page opens with the answer inside a 1,400 x 900
    # window: the recommendation (or why there is none) without scrolling or "Show more".
    page_text(browser, f"{url}/#/experiments", "quickstart", "Model training")
    click(browser, "//*[normalize-space(text())='Model training']")
    time.sleep(3)  # the list re-renders for the view just chosen
    follow(browser, f"//a[normalize-space(.)='quickstart' and contains(@href, '/{experiment}')]")
    follow(browser, f"//a[contains(@href, '{parent.info.run_id}')]")
    informative = parent.data.metrics["forecast_informative"] == 1
    headline = "Recommended infusion ratio" if informative else "No single ratio recommended"
    page_text(browser, browser.current_url, headline)
    close_assistant(browser)
    shot("sweep_run")
    shown = browser.find_element(By.XPATH, f"//*[contains(text(), '{headline}')]")
    top = browser.execute_script("return arguments[0].getBoundingClientRect().top", shown)
    assert 0 < top < browser.execute_script("return window.innerHeight"), top
    runs_page = f"{url}/#/experiments/{experiment}/runs"
    metrics_page = f"{runs_page}/{child.info.run_id}/model-metrics"
    text = page_text(browser, metrics_page, f"{TRIAL} (retention)")
    shot("trial_metrics")
    assert f"{TRIAL} (retention)" in text and f"{TRIAL} (acquisition)" in text

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


def drawn_charts(driver) -> int:
    """How many Plotly charts the page has drawn."""
    return driver.execute_script(
        "return [...document.querySelectorAll('.js-plotly-plot')]"
        ".filter(d => d.querySelector('.main-svg')).length"
    )


def test_the_report_opens_offline_and_in_mlflow_with_its_charts_drawn(ui, browser, tmp_path):
    """runs/quickstart/report.html opened from disk as a person opens a mailed file: the answer
    first, and each of its three charts drawn by the Plotly script the file carries; then the
    same file on the sweep's run in MLflow (Artifacts shows it in a frame that runs scripts)."""
    from selenium.webdriver.common.by import By

    url, workdir = ui
    report = workdir / "runs" / "quickstart" / "report.html"
    text = page_text(browser, report.as_uri(), "Recommended infusion ratio", "collapse per size")
    assert text.index("Recommended infusion ratio for n886k") < text.index("collapse per size")
    deadline = time.monotonic() + 30
    while drawn_charts(browser) < 3:
        assert time.monotonic() < deadline, "the report's charts were not drawn"
        time.sleep(0.5)
    # Each chart holds its traces: a line per size, the window's edges, the decision curves.
    traces = browser.execute_script(
        "return [...document.querySelectorAll('.js-plotly-plot')].map(d => d.data.length)"
    )
    assert traces[0] == 2 * 5 and traces[1] >= 6 and traces[2] >= 2, traces
    browser.save_screenshot(str(tmp_path / "report.png"))

    _, runs = runs_of(workdir, "quickstart")
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    run_page = f"{url}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
    browser.get(f"{run_page}/artifacts/report.html")
    deadline = time.monotonic() + 60
    while True:
        frames = browser.find_elements(By.TAG_NAME, "iframe")
        if frames:
            browser.switch_to.frame(frames[0])
            drawn = drawn_charts(browser)
            browser.switch_to.default_content()
            if drawn == 3:
                break
        assert time.monotonic() < deadline, "MLflow did not show the report with its charts"
        time.sleep(1)
    browser.save_screenshot(str(tmp_path / "report_in_mlflow.png"))
    print("screenshots:", tmp_path / "report.png", tmp_path / "report_in_mlflow.png")
