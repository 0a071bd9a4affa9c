"""End to end in headless Chromium against the live stack: a red-flag message through the real bot appears
in an open staff inbox by itself (server-sent events), with a tone, a desktop notification and the
unacknowledged count in the tab title; the case shows the transcript; a note is added and the case
resolved; a staff reply reaches the patient's widget as the clinic team, under the name the staff member
chose in their profile. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from mesocare import escalations
from mesocare.settings import ROOT

pytestmark = [pytest.mark.live, pytest.mark.browser]

SHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
USER, PASSWORD = "browser-nurse", "browser test password 1"
RED_FLAG = "I had mesolifting this morning and now my vision is blurry in my left eye"
# Wraps the page's real Notification constructor and OscillatorNode.start: every call still goes to the
# browser, and is also recorded for the test.
SPY = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notifications.push({title, body: (options || {}).body, tag: (options || {}).tag,
                                   at: performance.now()});
    }
  }
  Object.defineProperty(Recorded, "permission", {get: () => Real.permission});
  Recorded.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Recorded;
  window.__tones = [];
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    window.__tones.push({hz: this.frequency.value, state: this.context.state});
    return start.apply(this, args);
  };
})();
"""


@pytest.fixture(scope="module")
def browser(live_stack) -> Iterator[Browser]:  # noqa: ANN001 - the lead's LiveStack
    made = subprocess.run(
        [str(Path(ROOT / ".venv" / "bin" / "mesocare")), "staff", "add-user", USER, "--role", "admin",
         "--password-stdin"],
        input=PASSWORD + "\n", env={**os.environ, **live_stack.env},
        capture_output=True, text=True, timeout=60,
    )
    assert made.returncode == 0, made.stderr
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser: Browser, live_stack) -> Iterator[BrowserContext]:  # noqa: ANN001
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.grant_permissions(["notifications"], origin=live_stack.staff_url)
    ctx.add_init_script(SPY)
    try:
        yield ctx
    finally:
        ctx.close()


def log_in(page: Page, staff_url: str) -> None:
    page.goto(f"{staff_url}/")
    assert "/login" in page.url
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#inbox")


def unacknowledged(db_url: str) -> int:
    return len(escalations.list_escalations(status="open", url=db_url))


def test_red_flag_alerts_an_open_inbox_then_case_is_handled(live_stack, context) -> None:  # noqa: ANN001
    staff = live_stack.staff_url
    page = context.new_page()
    log_in(page, staff)
    expect(page.locator("#poll-status")).to_have_attribute("data-state", "live", timeout=10_000)
    page.get_by_role("button", name=re.compile("Turn on alerts")).click()  # unlocks the sound
    expect(page.locator("#alerts-state")).to_contain_text("sound on")
    expect(page.locator("#alerts-state")).to_contain_text("desktop notifications on")
    tones_before = page.evaluate("window.__tones.length")

    sender = live_stack.new_sender()
    replies = live_stack.send(sender, RED_FLAG)
    assert replies, "the bot did not answer"

    row = page.locator("tr.row", has_text=sender)
    row.wait_for(timeout=20_000)  # arrives through the event stream, no reload
    assert "EMERGENCY" in row.inner_text()
    case_id = int(row.get_attribute("data-id"))
    page.wait_for_function("id => window.__notifications.some(n => n.tag === 'mesocare-case-' + id)",
                           arg=case_id, timeout=10_000)
    [note] = [n for n in page.evaluate("window.__notifications") if n["tag"] == f"mesocare-case-{case_id}"]
    assert note["title"] == f"EMERGENCY: new case #{case_id}"
    assert "R1" in note["body"] and "vision" not in note["body"]  # no patient words on the desktop
    tones = page.evaluate("window.__tones")[tones_before:]
    assert len(tones) == 3 and {t["hz"] for t in tones} == {880} and tones[0]["state"] == "running"
    open_now = unacknowledged(live_stack.db_url)
    expect(page).to_have_title(f"({open_now}) Inbox — MesoCare")
    page.screenshot(path=str(SHOTS / "inbox-alert.png"), full_page=True)
    page.reload()  # the same case does not ring twice in this tab
    expect(page.locator("#poll-status")).to_have_attribute("data-state", "live", timeout=10_000)
    page.wait_for_timeout(1500)
    assert page.evaluate("window.__notifications.length") == 0

    row = page.locator("tr.row", has_text=sender)
    row.locator("a").click()
    page.wait_for_selector(".transcript")
    transcript = page.locator(".transcript").inner_text()
    assert "vision is blurry" in transcript
    flag = page.locator(".msg.user.trigger .flag").first
    expect(flag).to_contain_text(re.compile(r"^Red flag R1\b.*· E[01]$"))
    assert "R1" in page.locator("dl").first.inner_text()
    page.screenshot(path=str(SHOTS / "case.png"), full_page=True)

    page.click("button:has-text('Acknowledge')")
    page.wait_for_selector("text=Acknowledged and assigned to you.")
    page.fill("textarea[name=body] >> nth=0", "Phoned the patient, sent to eye casualty.")
    page.click("text=Add note")
    page.wait_for_selector("text=Phoned the patient, sent to eye casualty.")
    page.select_option("select[name=outcome]", "sent_to_emergency_care")
    page.click("button:has-text('Resolve')")
    page.wait_for_selector("text=Resolved: Sent to emergency care.")
    page.screenshot(path=str(SHOTS / "case-resolved.png"), full_page=True)

    page.goto(f"{staff}/")
    left = unacknowledged(live_stack.db_url)
    assert left == open_now - 1
    expect(page).to_have_title(f"({left}) Inbox — MesoCare" if left else "Inbox — MesoCare")
    expect(page.locator("tr.row", has_text=sender)).to_have_count(0)

    page.goto(f"{staff}/audit")
    assert "escalation.resolve" in page.content()


def test_staff_reply_reaches_the_widget_as_the_clinic_team(live_stack, context) -> None:  # noqa: ANN001
    staff = context.new_page()
    log_in(staff, live_stack.staff_url)
    staff.goto(f"{live_stack.staff_url}/profile")
    staff.fill("input[name=display_name]", "Anna")
    staff.fill("input[name=job_title]", "Nurse")
    staff.check("input[name=display_as][value=name]")
    staff.click("button:has-text('Save')")
    expect(staff.locator("#profile-preview")).to_have_text("Clinic team (Anna)")

    patient = context.new_page()
    patient.goto(f"{live_stack.site_url}/")
    patient.get_by_role("button", name="Chat with us").click()
    expect(patient.locator("#mesocare-widget")).to_have_attribute("data-mesocare-state", "online",
                                                                   timeout=60_000)
    patient.locator("#mc-input").fill(RED_FLAG)
    patient.locator("#mc-input").press("Enter")
    expect(patient.locator(".mc-msg--emergency").first).to_be_visible(timeout=60_000)
    sender = patient.evaluate("JSON.parse(sessionStorage.getItem('mesocare-widget:v1')).sessionId")

    staff.goto(f"{live_stack.staff_url}/")
    staff.locator("tr.row", has_text=sender).locator("a").click()
    staff.fill("form[action$='/reply'] textarea[name=body]", "Hello, I am Anna. Please keep your eye closed.")
    staff.click("button:has-text('Send to patient')")
    staff.wait_for_selector("text=Message sent to the patient.")

    info = patient.locator(".mc-msg--info")
    expect(info.first).to_be_visible(timeout=30_000)
    expect(info.first).to_contain_text("joined this chat")
    expect(info.first).not_to_have_attribute("data-urgency", re.compile("."))
    said = patient.locator(".mc-msg--staff")
    expect(said).to_have_count(1, timeout=30_000)
    expect(said.locator(".mc-speaker")).to_have_text("Clinic team (Anna)")
    assert said.locator(".mc-text").text_content() == (
        "Clinic team (Anna): Hello, I am Anna. Please keep your eye closed.")
    patient.screenshot(path=str(SHOTS / "widget-staff-reply.png"))

    staff.click("button:has-text('Hand back to the assistant')")
    staff.wait_for_selector("text=The assistant is back in the conversation.")
    expect(info).to_have_count(2, timeout=30_000)
    expect(info.last).to_contain_text("handed this chat back")
    # Urgent styling stays on the red-flag advice only.
    assert patient.locator(".mc-msg--staff[data-urgency], .mc-msg--info[data-urgency]").count() == 0
    assert patient.locator(".mc-msg--emergency").count() >= 1
