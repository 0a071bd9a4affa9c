"""End to end in headless Chromium: a red-flag message through the real bot appears in the staff inbox
without a reload; the case shows the transcript; a note is added and the case resolved.
Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesocare.settings import ROOT

pytestmark = [pytest.mark.live, pytest.mark.browser]

SHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
USER, PASSWORD = "browser-nurse", "browser test password 1"
RED_FLAG = "I had mesolifting this morning and now my vision is blurry in my left eye"


@pytest.fixture(scope="module")
def page(live_stack) -> Iterator:  # noqa: ANN001 - the lead's LiveStack
    from playwright.sync_api import sync_playwright

    made = subprocess.run(
        [str(Path(ROOT / ".venv" / "bin" / "mesocare")), "staff", "add-user", USER, "--role", "admin",
         "--password-stdin"],
        input=PASSWORD + "\n", env={**__import__("os").environ, **live_stack.env},
        capture_output=True, text=True, timeout=60,
    )
    assert made.returncode == 0, made.stderr
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            yield pg
        finally:
            browser.close()


def test_red_flag_reaches_inbox_then_case_is_handled(live_stack, page) -> None:  # noqa: ANN001
    staff = live_stack.staff_url
    page.goto(f"{staff}/")
    assert "/login" in page.url
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#inbox")

    sender = live_stack.new_sender()
    replies = live_stack.send(sender, RED_FLAG)
    assert replies, "the bot did not answer"

    row = page.locator("tr.row", has_text=sender)
    row.wait_for(timeout=20_000)  # appears through polling, no reload
    assert "EMERGENCY" in row.inner_text()
    page.screenshot(path=str(SHOTS / "inbox.png"), full_page=True)

    row.locator("a").click()
    page.wait_for_selector(".transcript")
    transcript = page.locator(".transcript").inner_text()
    assert "vision is blurry" in transcript
    assert page.locator(".msg.user.trigger").count() >= 1
    assert "R1" in page.locator("dl").first.inner_text()
    page.screenshot(path=str(SHOTS / "case.png"), full_page=True)

    page.fill("textarea[name=body] >> nth=0", "Phoned the patient, sent to eye casualty.")
    page.click("text=Add note")
    page.wait_for_selector("text=Phoned the patient, sent to eye casualty.")
    page.select_option("select[name=outcome]", "sent_to_emergency_care")
    page.click("button:has-text('Resolve')")
    page.wait_for_selector("text=Resolved: Sent to emergency care.")
    page.screenshot(path=str(SHOTS / "case-resolved.png"), full_page=True)

    page.goto(f"{staff}/audit")
    assert "escalation.resolve" in page.content()
    page.screenshot(path=str(SHOTS / "audit.png"), full_page=True)
