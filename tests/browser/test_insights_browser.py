"""In headless Chromium: the insights page shows labelled SVG charts and a CSV download; a misunderstood
message is labelled on /review (and marked a missed red flag), shows on /review/clinical, and
`mesocare nlu export-reviewed` writes it out. The staff app runs in-process (uvicorn) on the hand-counted
data set of tests/insights_data.py; no Rasa server is needed. Screenshots: test-output/screenshots/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from insights_data import FALLBACK_A, FALLBACK_B, NOW, TARGETS_YML, write_escalations, write_tracker

from mesocare.db.session import session_scope, upgrade_head
from mesocare.settings import ROOT, Settings
from mesocare.staff.app import create_app
from mesocare.staff.auth import create_user

pytestmark = [pytest.mark.browser]

SHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
USER, PASSWORD = "insights-admin", "browser insights password 1"
SECRET_KEY = "browser-insights-secret-key-123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    import uvicorn

    tmp = tmp_path_factory.mktemp("insights-browser")
    db_url = f"sqlite:///{tmp / 'mesocare.db'}"
    upgrade_head(db_url)
    write_escalations(db_url)
    with session_scope(db_url) as s:
        create_user(s, USER, PASSWORD, "admin")
    write_tracker(tmp / "tracker.db")
    (tmp / "clinic.yml").write_text(TARGETS_YML)
    tracker_url = f"sqlite:///{tmp / 'tracker.db'}"
    settings = Settings(db_url=db_url, tracker_db_url=tracker_url, clinic_config=tmp / "clinic.yml",
                        rasa_jwt_secret="j" * 32, secret_key=SECRET_KEY)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(settings, clock=lambda: NOW, notify_interval=None),
                                        host="127.0.0.1", port=port, log_level="warning", ws="none"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the staff app did not start"
    try:
        yield {"url": f"http://127.0.0.1:{port}", "db_url": db_url, "tracker_url": tracker_url, "tmp": tmp}
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(server: dict) -> Iterator:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        try:
            yield pg
        finally:
            browser.close()


def test_insights_then_review_then_export(server: dict, page) -> None:  # noqa: ANN001 - Playwright Page
    base = server["url"]
    page.goto(f"{base}/insights")
    assert "/login" in page.url
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/insights")  # back where the login started
    page.fill("input[name=from]", "2026-11-01")
    page.fill("input[name=to]", "2026-11-03")
    page.click("#period button[type=submit]")
    page.wait_for_url("**/insights?from=2026-11-01&to=2026-11-03")
    charts = page.locator("svg.chart")
    assert charts.count() == 7
    for i in range(charts.count()):
        svg = charts.nth(i)
        assert svg.get_attribute("role") == "img"
        assert svg.locator("title").first.text_content()
        assert svg.bounding_box()["height"] > 30  # drawn, not empty
    rules = page.locator("#chart-rules")
    assert "R1" in rules.text_content() and "R3" in rules.text_content()
    assert "2 of 9 patient messages hit the fallback" in page.locator("#card-language").inner_text()
    page.screenshot(path=str(SHOTS / "insights.png"), full_page=True)

    with page.expect_download() as dl:
        page.click("#card-rules a.csv")
    csv_path = dl.value.path()
    assert Path(csv_path).read_text().splitlines() == ["rule,escalations", "R1,2", "R3,1", "R7,1"]

    page.goto(f"{base}/review?from=2026-11-01&to=2026-11-03")
    item = page.locator("li.review-item", has_text=FALLBACK_B)
    item.wait_for()
    assert page.locator("li.review-item", has_text=FALLBACK_A).count() == 1
    page.screenshot(path=str(SHOTS / "review-queue.png"), full_page=True)
    item.locator("select[name=intent]").select_option("report_symptoms")
    item.locator("input[name=missed_red_flag]").check()
    item.locator("button[type=submit]").click()
    page.wait_for_selector("text=sent to the clinical review list")
    assert page.locator("li.review-item", has_text=FALLBACK_B).count() == 0  # left the queue
    other = page.locator("li.review-item", has_text=FALLBACK_A)
    other.locator("select[name=intent]").select_option("out_of_scope")
    other.locator("button[type=submit]").click()
    page.wait_for_selector("text=labelled out_of_scope.")
    page.screenshot(path=str(SHOTS / "review-labelled.png"), full_page=True)

    page.click("text=Clinical review list")
    page.wait_for_selector("#clinical")
    assert FALLBACK_B in page.locator("#clinical").inner_text()
    page.screenshot(path=str(SHOTS / "review-clinical.png"), full_page=True)

    out = server["tmp"] / "reviewed.yml"
    env = {**os.environ, "MESOCARE_DB_URL": server["db_url"],
           "MESOCARE_TRACKER_DB_URL": server["tracker_url"]}
    done = subprocess.run([str(Path(sys.executable).parent / "mesocare"), "nlu", "export-reviewed",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    examples = {i["intent"]: i["examples"] for i in yaml.safe_load(out.read_text())["nlu"]}
    assert examples == {"out_of_scope": f"- {FALLBACK_A}\n", "report_symptoms": f"- {FALLBACK_B}\n"}
