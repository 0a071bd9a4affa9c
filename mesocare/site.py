"""Clinic demo site: the mesolifting page with the chat widget, and the widget's assets and config.

`mesocare site serve [--port 8080]`; `create_app(settings)` for tests. Everything is served from this
host (socket.io-client from web/node_modules): the page makes no third-party request.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from mesocare.clinic import retention_days_of
from mesocare.settings import ROOT, Settings, get_settings

WEB = ROOT / "web"
PAGE_TEXT = WEB / "content" / "face-mesolifting.txt"
WIDGET_CONFIG = WEB / "widget-config.json"
SOCKET_IO_JS = WEB / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
SKIPPED_HEADINGS = {"photo gallery"}


@dataclass(frozen=True)
class Block:
    """One block of the clinic page: kind is h1, h2, h3, p or ul."""

    kind: str
    text: str = ""
    items: tuple[str, ...] = ()


def parse_page(text: str) -> list[Block]:
    """Turn the clinic's plain-text page into headings, paragraphs and bullet lists."""
    blocks: list[Block] = []
    bullets: list[str] = []
    lines = [line.strip() for line in text.splitlines()]
    for line in [*lines, ""]:
        if line.startswith("•"):
            bullets.append(line.lstrip("• ").rstrip(";."))
            continue
        if bullets:
            blocks.append(Block("ul", items=tuple(bullets)))
            bullets = []
        if not line or line.lower() in SKIPPED_HEADINGS:
            continue
        if not blocks:
            blocks.append(Block("h1", line))
        elif len(line) < 60 and line[-1] not in ".;:!?":
            blocks.append(Block("h3" if re.match(r"The \w+ stage$", line) else "h2", line))
        else:
            blocks.append(Block("p", line))
    return blocks


def load_clinic(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def widget_config(settings: Settings) -> dict[str, Any]:
    """The widget's site text (web/widget-config.json) with the clinic's numbers filled in.

    The retention period comes from data/clinic.yml (`retention_days`, the one `privacy purge` uses).
    """
    raw = json.loads(WIDGET_CONFIG.read_text(encoding="utf-8"))
    clinic = load_clinic(settings.clinic_config)
    days = retention_days_of(clinic)
    retention = str(raw.get("retention_text") or "") if days else ""
    values = {
        "emergency_number": str(clinic.get("emergency_number", "")),
        "clinic_phone": str(clinic.get("clinic_phone", "")),
        "clinic_name": str(clinic.get("clinic_name", "")),
        "retention": retention.replace("{retention_days}", str(days)),
    }
    cfg: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith("_") or key == "retention_text":
            continue
        if isinstance(value, str):
            number = re.escape(values["emergency_number"]) if key.endswith("_pattern") else None
            value = value.replace("{emergency_number}", number or values["emergency_number"])
            value = value.replace("{clinic_phone}", values["clinic_phone"])
            value = value.replace("{retention}", values["retention"])
        cfg[key] = value
    cfg["socket_url"] = settings.rasa_url
    cfg["phone_numbers"] = [v for v in (values["clinic_phone"], values["emergency_number"]) if v]
    cfg["clinic_name"] = values["clinic_name"]
    return cfg


def _origins(url: str) -> str:
    parts = urlsplit(url)
    ws = "wss" if parts.scheme == "https" else "ws"
    return f"{parts.scheme}://{parts.netloc} {ws}://{parts.netloc}"


def security_headers(settings: Settings) -> dict[str, str]:
    """A strict policy: scripts, styles and fonts from this host only; sockets to Rasa only."""
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {_origins(settings.rasa_url)}; font-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )
    return {
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    templates = Jinja2Templates(directory=str(WEB / "templates"))
    blocks = parse_page(PAGE_TEXT.read_text(encoding="utf-8"))

    async def index(request: Request) -> Response:
        clinic = load_clinic(settings.clinic_config)
        context = {"blocks": blocks, "clinic": clinic, "socket_url": settings.rasa_url}
        resp = templates.TemplateResponse(request, "index.html", context)
        resp.headers.update(security_headers(settings))
        return resp

    async def config(_: Request) -> Response:
        # Public, non-personal text: readable by the clinic's real site (another origin).
        return JSONResponse(
            widget_config(settings),
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"},
        )

    async def socket_io(_: Request) -> Response:
        if not SOCKET_IO_JS.exists():
            return PlainTextResponse("socket.io-client missing: run `cd web && npm ci`", 503)
        return FileResponse(SOCKET_IO_JS, media_type="text/javascript")

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def favicon(_: Request) -> Response:
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/healthz", healthz),
            Route("/favicon.ico", favicon),
            Route("/widget/config.json", config),
            Route("/widget/vendor/socket.io.min.js", socket_io),
            Mount("/widget", StaticFiles(directory=str(WEB / "widget")), name="widget"),
            Mount("/static", StaticFiles(directory=str(WEB / "static")), name="static"),
        ]
    )


def serve(args: argparse.Namespace) -> int:
    """Run the demo site with uvicorn."""
    import uvicorn

    settings = get_settings()
    # ws="none": the site serves no websockets, and Rasa pins a `websockets` too old for uvicorn's.
    uvicorn.run(create_app(settings), host=args.host, port=args.port or settings.site_port,
                log_level="warning", ws="none")
    return 0


def register(subparsers: Any) -> None:
    """Add `site serve` to the `mesocare` command line."""
    site = subparsers.add_parser("site", help="clinic demo page with the chat widget")
    sub = site.add_subparsers(dest="site_command", required=True)
    cmd = sub.add_parser("serve", help="serve the demo page and widget assets")
    cmd.add_argument("--port", type=int, default=None, help="default: MESOCARE_SITE_PORT or 8080")
    cmd.add_argument("--host", default="127.0.0.1")
    cmd.set_defaults(func=serve, handler=serve)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mesocare")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main(["site", *__import__("sys").argv[1:]]))
