"""The website chat widget in real headless Chromium against the live Rasa server (socket.io).

Screenshots go to test-output/screenshots/. Set MESOCARE_WIDGET_SITE_URL to point these tests at an
already running site (e.g. `make run`) instead of the shared live stack.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    WebSocketRoute,
    expect,
    sync_playwright,
)

from mesocare.settings import ROOT

pytestmark = [pytest.mark.live, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "test-output" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
RED_FLAG = "I can't see properly out of my left eye since the injections"
REPLY_TIMEOUT = 60_000


@dataclass
class WidgetPage:
    """A page with the widget, recording every request (HTTP and WebSocket) it makes."""

    page: Page
    site_url: str
    urls: list[str] = field(default_factory=list)

    def open(self) -> None:
        self.page.goto(self.site_url + "/")
        self.page.get_by_role("button", name="Chat with us").click()
        self.wait_online()

    def wait_online(self) -> None:
        expect(self.page.locator("#mesocare-widget")).to_have_attribute(
            "data-mesocare-state", "online", timeout=REPLY_TIMEOUT
        )

    def bot_texts(self) -> list[str]:
        return self.page.locator(".mc-msg--bot .mc-text").all_inner_texts()

    def ask(self, text: str) -> list[str]:
        """Type a question with the keyboard; return the bot messages of this turn."""
        before = self.page.locator(".mc-msg--bot").count()
        self.page.locator("#mc-input").fill(text)
        self.page.locator("#mc-input").press("Enter")
        return self.wait_replies(before)

    def wait_replies(self, before: int) -> list[str]:
        bots = self.page.locator(".mc-msg--bot")
        expect(bots.nth(before)).to_be_visible(timeout=REPLY_TIMEOUT)
        expect(self.page.locator(".mc-typing")).to_be_hidden(timeout=REPLY_TIMEOUT)
        return self.bot_texts()[before:]

    def session_id(self) -> str:
        return self.page.evaluate(
            "JSON.parse(sessionStorage.getItem('mesocare-widget:v1')).sessionId"
        )

    def foreign_requests(self) -> list[str]:
        return [u for u in self.urls if urlsplit(u).hostname not in LOCAL_HOSTS]


@pytest.fixture(scope="module")
def site_url(request: pytest.FixtureRequest) -> str:
    override = os.environ.get("MESOCARE_WIDGET_SITE_URL")
    if override:
        return override.rstrip("/")
    return request.getfixturevalue("live_stack").site_url


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


def _widget_page(browser: Browser, site_url: str, width: int, height: int) -> Iterator[WidgetPage]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    wp = WidgetPage(page, site_url)
    page.on("request", lambda req: wp.urls.append(req.url))
    page.on("websocket", lambda ws: wp.urls.append(ws.url))
    yield wp
    context.close()
    assert wp.urls, "no request recorded"
    assert wp.foreign_requests() == [], "the page contacted a third-party host"


@pytest.fixture()
def widget(browser: Browser, site_url: str) -> Iterator[WidgetPage]:
    yield from _widget_page(browser, site_url, 1280, 800)


@pytest.fixture()
def phone(browser: Browser, site_url: str) -> Iterator[WidgetPage]:
    yield from _widget_page(browser, site_url, 360, 740)


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


def _axe_serious(page: Page) -> list[str]:
    # Evaluated through DevTools, so the page's strict CSP (no inline scripts) stays on.
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    violations = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [f"{v['id']} ({v['impact']}): {v['nodes']}" for v in violations
            if v["impact"] in ("serious", "critical")]


def test_questions_quick_reply_and_reload_keep_the_conversation(widget: WidgetPage) -> None:
    page = widget.page
    widget.open()
    notice = page.locator(".mc-notice")
    expect(notice).to_contain_text("not for emergencies")
    expect(notice).to_contain_text("contact details")
    expect(page.locator("#mc-input")).to_be_focused()

    first = " ".join(widget.ask("what is mesolifting"))
    assert "hyaluronic acid" in first.lower()

    # Keyboard only: from the input, Shift+Tab walks back through the quick replies to the first one
    # (an information answer; the later ones may start booking).
    quick = page.locator(".mc-msg--bot .mc-quick-btn")
    expect(quick.first).to_be_visible()
    titles = quick.all_inner_texts()
    page.locator("#mc-input").focus()
    for _ in titles:
        page.keyboard.press("Shift+Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == titles[0]
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "keyboard focus must be visible"
    before = page.locator(".mc-msg--bot").count()
    page.keyboard.press("Enter")
    expect(page.locator(".mc-msg--user .mc-text").last).to_have_text(f"You: {titles[0]}")
    assert not page.locator(".mc-msg--user").last.inner_text().startswith("/")
    widget.wait_replies(before)
    # The used quick replies are retired; the new answer's own buttons (if any) stay.
    expect(page.locator(".mc-msg--bot").nth(before - 1).locator(".mc-quick-btn")).to_have_count(0)

    pain = " ".join(widget.ask("does it hurt"))
    assert re.search(r"needle|prick|pain|sore|hurt|comfort", pain, re.I), pain
    _shot(page, "widget-1280.png")

    # Reload: same session id, same transcript, still connected.
    session, transcript = widget.session_id(), widget.bot_texts()
    user_msgs = page.locator(".mc-msg--user .mc-text").all_inner_texts()
    page.reload()
    widget.wait_online()
    assert widget.session_id() == session
    assert widget.bot_texts() == transcript
    assert page.locator(".mc-msg--user .mc-text").all_inner_texts() == user_msgs
    assert re.fullmatch(r"[0-9a-f-]{32,36}", session)

    # The server still knows the conversation after the reload (same Rasa sender id).
    assert "hyaluronic acid" in " ".join(widget.ask("what is mesolifting")).lower()

    page.get_by_role("button", name="New conversation").click()
    widget.wait_online()
    assert page.locator(".mc-msg--bot, .mc-msg--user").count() == 0
    assert widget.session_id() != session


def test_red_flag_reply_is_styled_as_emergency(widget: WidgetPage) -> None:
    page = widget.page
    widget.open()
    widget.ask(RED_FLAG)
    emergency = page.locator(".mc-msg--bot.mc-msg--emergency")
    expect(emergency.first).to_be_visible()
    expect(emergency.first.locator(".mc-urgency-label")).to_be_visible()
    normal_bg = page.evaluate(
        "getComputedStyle(document.querySelector('.mc-msg--site')).backgroundColor"
    )
    emergency_bg = emergency.first.evaluate("e => getComputedStyle(e).backgroundColor")
    border = emergency.first.evaluate("e => getComputedStyle(e).borderLeftWidth")
    assert emergency_bg != normal_bg and float(border.rstrip("px")) >= 4
    for href in page.locator(".mc-log a").evaluate_all("as => as.map(a => a.href)"):
        assert re.match(r"(https?|tel|mailto):", href), href
    _shot(page, "widget-emergency-1280.png")
    assert _axe_serious(page) == []


def test_message_typed_offline_is_sent_after_reconnecting(widget: WidgetPage) -> None:
    page = widget.page
    widget.open()
    page.context.set_offline(True)
    expect(page.locator("#mesocare-widget")).to_have_attribute("data-mesocare-state", "offline")
    expect(page.locator(".mc-status")).to_contain_text("Connection lost")
    before = page.locator(".mc-msg--bot").count()
    page.locator("#mc-input").fill("what is mesolifting")
    page.locator("#mc-input").press("Enter")
    pending = page.locator(".mc-msg--user").last
    expect(pending.locator(".mc-delivery")).to_have_text("Waiting to send")
    page.wait_for_timeout(1500)
    assert page.locator(".mc-msg--bot").count() == before, "no answer can arrive while offline"
    # Reload while offline would lose nothing either: the queue is in sessionStorage.
    stored = page.evaluate("sessionStorage.getItem('mesocare-widget:v1')")
    assert '"status":"queued"' in stored

    page.context.set_offline(False)
    widget.wait_online()
    replies = widget.wait_replies(before)
    assert "hyaluronic acid" in " ".join(replies).lower()
    expect(pending.locator(".mc-delivery")).to_have_count(0)


def test_html_typed_by_the_patient_is_shown_as_text(widget: WidgetPage) -> None:
    page = widget.page
    widget.open()
    evil = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script><b>bold</b>'
    widget.ask(evil)
    last_user = page.locator(".mc-msg--user .mc-text").last
    expect(last_user).to_have_text("You: " + evil)
    assert page.locator(".mc-log img, .mc-log script, .mc-log b").count() == 0
    assert page.evaluate("window.__xss") is None


def test_bot_html_unsafe_links_and_emergency_markers(widget: WidgetPage) -> None:
    """Frames injected into the real socket (Playwright WebSocket routing) as if Rasa sent them."""
    page = widget.page
    routes: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        routes.append(ws)

    page.route_web_socket(re.compile(r"/socket\.io/"), through)
    widget.open()

    def bot_says(payload: dict) -> None:
        routes[-1].send("42" + json.dumps(["bot_uttered", payload]))

    evil = ('<img src=x onerror="window.__xss=1"><script>window.__xss=1</script> '
            "[click](javascript:window.__xss=1) [our page](https://clinic.example/page)")
    bot_says({"text": evil})
    bubble = page.locator(".mc-msg--bot").first
    expect(bubble).to_contain_text('<img src=x onerror="window.__xss=1">')
    expect(bubble).to_contain_text("[click](javascript:window.__xss=1)")
    assert page.locator(".mc-log img, .mc-log script").count() == 0
    links = bubble.locator("a")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "https://clinic.example/page")
    expect(links).to_have_attribute("rel", re.compile("noopener"))
    assert page.evaluate("window.__xss") is None
    expect(bubble).not_to_have_attribute("data-urgency", "emergency")

    # The agreed marker: custom {data: {urgency}} arrives after the text of the same response and
    # marks the bot messages of the current turn (since the patient's last message).
    widget.ask("hello")
    bot_says({"text": "Please get help now."})
    bot_says({"urgency": "emergency"})
    expect(page.locator(".mc-msg--bot").last).to_have_attribute("data-urgency", "emergency")
    expect(bubble).not_to_have_attribute("data-urgency", "emergency")
    # Safety net without the marker: the configured "call <emergency number>" pattern.
    bot_says({"text": "If you cannot breathe, call 999 straight away."})
    last = page.locator(".mc-msg--bot").last
    expect(last).to_have_attribute("data-urgency", "emergency")
    expect(last.locator('a[href="tel:999"]')).to_have_count(1)
    # Buttons: title shown, payload sent, not shown.
    bot_says({"text": "Anything else?", "quick_replies": [
        {"content_type": "text", "title": "What happens in a session?", "payload": "/ask_procedure"}]})
    before = page.locator(".mc-msg--bot").count()
    page.get_by_role("button", name="What happens in a session?").click()
    expect(page.locator(".mc-msg--user .mc-text").last).to_have_text(
        "You: What happens in a session?"
    )
    widget.wait_replies(before)


def test_phone_width_layout_and_accessibility(phone: WidgetPage) -> None:
    page = phone.page
    phone.open()
    phone.ask("what is mesolifting")
    box = page.locator(".mc-panel").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    expect(page.locator(".mc-log")).to_have_attribute("role", "log")
    expect(page.locator(".mc-log")).to_have_attribute("aria-live", "polite")
    expect(page.get_by_label("Your message")).to_be_visible()
    _shot(page, "widget-360.png")
    assert _axe_serious(page) == []


def test_axe_core_is_installed() -> None:
    assert Path(AXE).exists(), "run `cd web && npm ci`"


def _axe_contrast_and_aria(page: Page) -> list[str]:
    """Every colour-contrast or ARIA violation (any impact) and every serious/critical one."""
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    violations = page.evaluate(
        "async () => (await axe.run(document.querySelector('#mesocare-widget'), "
        "{resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [f"{v['id']} ({v['impact']}): {v['nodes']}" for v in violations
            if "contrast" in v["id"] or v["id"].startswith("aria")
            or v["impact"] in ("serious", "critical")]


def test_speakers_staff_bot_info_and_emergency_are_told_apart(widget: WidgetPage) -> None:
    """The frames Rasa sends for a staff handoff (actions/handoff.py), injected into the real socket."""
    page = widget.page
    routes: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        routes.append(ws)

    page.route_web_socket(re.compile(r"/socket\.io/"), through)
    widget.open()

    def bot_says(payload: dict) -> None:
        routes[-1].send("42" + json.dumps(["bot_uttered", payload]))

    widget.ask("what is mesolifting")  # a real answer from the assistant
    joined = ("A person from the clinic team has joined this chat. They will reply to you here. "
              "If you have trouble seeing, breathing or swallowing, call 999 now.")
    bot_says({"text": joined})
    bot_says({"kind": "info", "parts": 1})
    bot_says({"text": "Hello, I am Anna from the clinic."})
    bot_says({"text": "Can you send me a photo of the area?"})  # one staff message, split at a blank line
    bot_says({"speaker": "staff", "display_name": "Anna", "parts": 2})
    bot_says({"text": "If your vision gets worse, call 999 now."})
    bot_says({"urgency": "emergency"})

    info = page.locator(".mc-msg--info")
    expect(info).to_have_count(1)
    expect(info).not_to_have_attribute("data-urgency", re.compile("."))
    expect(info.locator(".mc-urgency-label")).to_have_count(0)
    assert info.locator(".mc-text").text_content().startswith("Information: A person from the clinic")

    staff = page.locator(".mc-msg--staff")
    expect(staff).to_have_count(2)
    expect(staff.first.locator(".mc-speaker")).to_have_text("Clinic team (Anna)")
    first_staff = staff.first.locator(".mc-text").text_content()
    assert first_staff == "Clinic team (Anna): Hello, I am Anna from the clinic."
    assert staff.nth(1).locator(".mc-text").text_content().startswith("Clinic team (Anna): Can you send")
    expect(staff.first).not_to_have_attribute("data-urgency", re.compile("."))

    # The emergency marker marks its own response, not across the clinic team's messages.
    assistant = page.locator(".mc-msg--bot:not(.mc-msg--staff):not(.mc-msg--info):not([data-urgency])")
    expect(assistant.first).to_contain_text("hyaluronic acid")
    assert assistant.first.locator(".mc-text").text_content().startswith("Assistant: ")
    emergency = page.locator(".mc-msg--emergency", has_text="If your vision gets worse")
    expect(emergency).to_have_count(1)
    assert emergency.locator(".mc-text").text_content().startswith("Assistant: ")

    style = "e => getComputedStyle(e).backgroundColor"
    backgrounds = {staff.first.evaluate(style), assistant.first.evaluate(style), emergency.evaluate(style),
                   info.evaluate(style)}
    assert len(backgrounds) == 4, backgrounds
    _shot(page, "widget-speakers-1280.png")
    assert _axe_contrast_and_aria(page) == []

    page.reload()  # the speakers are kept with the conversation
    widget.wait_online()
    expect(page.locator(".mc-msg--staff .mc-speaker").first).to_have_text("Clinic team (Anna)")
    expect(page.locator(".mc-msg--info")).to_have_count(1)
