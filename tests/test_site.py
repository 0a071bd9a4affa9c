"""The clinic demo site: page content, widget config, assets, security headers (no live Rasa)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from mesocare import site
from mesocare.settings import ROOT, Settings

SHARED_PAGE = ROOT.parent / "shared" / "content" / "face-mesolifting.txt"


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    clinic = tmp_path / "clinic.yml"
    clinic.write_text(
        yaml.safe_dump(
            {"clinic_name": "Test Clinic", "clinic_phone": "020 7946 0123", "emergency_number": "112",
             "retention_days": 30}
        )
    )
    return Settings(rasa_url="http://127.0.0.1:5999", clinic_config=clinic)


@pytest.fixture()
def client(settings: Settings) -> TestClient:
    return TestClient(site.create_app(settings))


def test_page_renders_every_paragraph_of_the_clinic_text(client: TestClient) -> None:
    html = client.get("/").text
    source = site.PAGE_TEXT.read_text(encoding="utf-8")
    for line in filter(None, (x.strip() for x in source.splitlines())):
        if line == "Photo gallery":
            continue
        fragment = line.lstrip("• ").rstrip(";.")[:60]
        escaped = fragment.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        escaped = escaped.replace('"', "&#34;").replace("'", "&#39;")
        assert escaped in html, fragment
    assert "<h1>Face Mesolifting</h1>" in html
    assert "<h3>The first stage</h3>" in html
    assert "<li>pigmented spots</li>" in html


@pytest.mark.skipif(not SHARED_PAGE.exists(), reason="shared/ not beside the repository")
def test_page_copy_matches_the_clinic_source() -> None:
    assert site.PAGE_TEXT.read_text(encoding="utf-8") == SHARED_PAGE.read_text(encoding="utf-8")


def test_parse_page_structure() -> None:
    blocks = site.parse_page("Title\n\nA sentence.\n\nA heading\n\n  • one;\n  • two.\n\nThe second stage\n")
    assert [b.kind for b in blocks] == ["h1", "p", "h2", "ul", "h3"]
    assert blocks[3].items == ("one", "two")


def test_embed_snippet_uses_configured_socket_url(client: TestClient) -> None:
    html = client.get("/").text
    tag = re.search(r"<script [^>]*mesocare-widget\.js[^>]*>", html)
    assert tag is not None
    assert 'data-socket-url="http://127.0.0.1:5999"' in tag.group(0)
    assert "defer" in tag.group(0)


def test_page_loads_nothing_from_other_hosts(client: TestClient) -> None:
    html = client.get("/").text
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith(("/", "#", "tel:")), url
    for asset in ("/widget/mesocare-widget.css", "/static/clinic.css", "/widget/mesocare-widget.js"):
        code = re.sub(r"/\*.*?\*/", "", client.get(asset).text, flags=re.S)
        assert not re.search(r"https?://|@import|googleapis", code), asset


def test_security_headers_restrict_connections_to_rasa(client: TestClient) -> None:
    headers = client.get("/").headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "connect-src 'self' http://127.0.0.1:5999 ws://127.0.0.1:5999" in csp
    assert headers["referrer-policy"] == "no-referrer"


def test_widget_config_fills_clinic_numbers_and_retention(client: TestClient) -> None:
    resp = client.get("/widget/config.json")
    assert resp.headers["access-control-allow-origin"] == "*"
    cfg = resp.json()
    raw = json.loads(site.WIDGET_CONFIG.read_text())
    assert cfg["socket_url"] == "http://127.0.0.1:5999"
    assert "call 112" in cfg["emergency_notice"]
    assert "not for emergencies" in cfg["emergency_notice"]
    assert cfg["phone_numbers"] == ["020 7946 0123", "112"]
    assert raw["retention_text"].strip().replace("{retention_days}", "30") in cfg["privacy_notice"]
    for key, value in cfg.items():
        assert not (isinstance(value, str) and "{" in value), key
    assert re.search(cfg["emergency_text_pattern"], "Please call 112 now")


def test_retention_sentence_is_dropped_when_not_configured(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = json.loads(site.WIDGET_CONFIG.read_text())
    raw["retention_text"] = ""
    alt = tmp_path / "widget-config.json"
    alt.write_text(json.dumps(raw))
    monkeypatch.setattr(site, "WIDGET_CONFIG", alt)
    notice = site.widget_config(settings)["privacy_notice"]
    assert "month" not in notice
    assert "chat text" in notice


def test_widget_assets_served(client: TestClient) -> None:
    js = client.get("/widget/mesocare-widget.js")
    assert js.status_code == 200
    assert "innerHTML" not in js.text, "bot text must never be rendered as HTML"
    assert client.get("/widget/mesocare-widget.css").status_code == 200
    vendor = client.get("/widget/vendor/socket.io.min.js")
    if not site.SOCKET_IO_JS.exists():
        assert vendor.status_code == 503
    else:
        assert vendor.status_code == 200 and "io" in vendor.text[:2000]
    assert client.get("/widget/../mesocare/settings.py").status_code == 404


def test_cli_registers_site_serve() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    site.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["site", "serve", "--port", "8181"])
    assert args.port == 8181 and args.func is site.serve
