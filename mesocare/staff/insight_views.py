"""Staff pages: insights (/insights, charts + CSV downloads) and review of misunderstood messages
(/review, /review/clinical for admins). Every view and label is audited without message text."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from mesocare import escalations
from mesocare.settings import Settings
from mesocare.staff import charts, insights, review
from mesocare.staff.guard import login_required, pop_flash, require_admin, set_flash
from mesocare.staff.insights import Insights, Period

CSV_HEADERS: dict[str, tuple[str, ...]] = {
    "conversations": ("day", "conversations"),
    "intents": ("intent", "messages"),
    "language": ("measure", "messages", "share"),
    "reasons": ("reason", "escalations"),
    "priorities": ("priority", "escalations"),
    "rules": ("rule", "escalations"),
    "response": ("priority", "measure", "count", "waiting", "median_min", "p90_min", "target_min",
                 "target_met"),
}
MEASURE_LABELS = {"acknowledge": "acknowledge", "resolve": "resolve"}


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _render(request: Request, name: str, ctx: dict[str, Any], status_code: int = 200) -> Response:
    from mesocare.staff.app import _render as render  # the staff app's page renderer (imports this module)

    return render(request, name, ctx, status_code)


def _period(request: Request) -> Period:
    today = datetime.fromtimestamp(request.app.state.clock(), tz=timezone.utc).date()
    q = request.query_params
    return insights.parse_period(q.get("from"), q.get("to"), today)


def _gather(request: Request, period: Period) -> Insights:
    s = _settings(request)
    return insights.gather(s.db_url, s.tracker_db_url, s.clinic_config, period)


def _csv_rows(settings: Settings, period: Period, chart: str) -> list[tuple[Any, ...]]:
    """The rows behind one chart, computed alone (a download runs only its own query)."""
    t, d = settings.tracker_db_url, settings.db_url
    insights.ensure_tracker_indexes(t)
    if chart == "conversations":
        return [(day.isoformat(), n) for day, n in insights.conversations_per_day(t, period)]
    if chart == "intents":
        return insights.messages_by_intent(t, period)
    if chart == "language":
        lang = insights.language_share(insights.messages_by_intent(t, period))
        return [("patient messages", lang.messages, 1.0 if lang.messages else 0.0),
                ("not understood (nlu_fallback)", lang.fallback, round(lang.fallback_rate, 4)),
                ("other language (other_language)", lang.other_language, round(lang.other_language_rate, 4))]
    if chart in ("reasons", "priorities"):
        return insights.escalations_by(d, period, {"reasons": "reason", "priorities": "priority"}[chart])
    if chart == "rules":
        return insights.escalations_by_rule(d, period)
    targets = insights.response_targets(settings.clinic_config)
    return [(r.priority, r.measure, r.count, r.waiting, _round(r.median), _round(r.p90), _round(r.target),
             "" if r.met is None else ("yes" if r.met else "no"))
            for r in insights.response_times(d, period, targets)]


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, 2)


def _charts(data: Insights) -> list[dict[str, Any]]:
    lang = data.language
    resp = [(f"{r.priority} · {MEASURE_LABELS[r.measure]}", r.median, r.p90, r.target)
            for r in data.response]
    return [
        {"key": "conversations", "title": "Conversations per day",
         "svg": charts.day_chart("chart-conversations", "Conversations per day (UTC)", data.per_day)},
        {"key": "intents", "title": "Questions by intent",
         "svg": charts.bar_chart("chart-intents", "Patient messages by intent", data.by_intent)},
        {"key": "language", "title": "Not understood and other languages",
         "svg": charts.bar_chart(
             "chart-language", "Share of patient messages not understood or not in English",
             [("not understood", lang.fallback_rate * 100),
              ("other language", lang.other_language_rate * 100)],
             fmt=lambda v: f"{v:.1f} %"),
         "note": f"{lang.fallback:,} of {lang.messages:,} patient messages hit the fallback "
                 f"({charts.percent(lang.fallback_rate)}); {lang.other_language:,} "
                 f"{'was' if lang.other_language == 1 else 'were'} in another "
                 f"language ({charts.percent(lang.other_language_rate)})."},
        {"key": "priorities", "title": "Escalations by priority",
         "svg": charts.bar_chart("chart-priorities", "Escalations by priority", data.by_priority)},
        {"key": "reasons", "title": "Escalations by reason",
         "svg": charts.bar_chart("chart-reasons", "Escalations by reason", data.by_reason)},
        {"key": "rules", "title": "Escalations by red-flag rule",
         "svg": charts.bar_chart("chart-rules", "Escalations by red-flag rule (R-code)", data.by_rule)},
        {"key": "response", "title": "Time to acknowledge and to resolve",
         "svg": charts.target_chart(
             "chart-response", "Minutes to acknowledge and to resolve, against targets", resp)},
    ]


# ---------- insights ----------
@login_required()
async def insights_page(request: Request) -> Response:
    period = _period(request)
    data = await run_in_threadpool(_gather, request, period)
    escalations.audit(request.state.user.username, "insights.view", None, None,
                      {"from": period.start.isoformat(), "to": period.end.isoformat()},
                      url=_settings(request).db_url)
    return _render(request, "insights.html", {"period": period, "charts": _charts(data), "data": data,
                                              "minutes": charts._minutes})


@login_required()
async def insights_csv(request: Request) -> Response:
    chart = request.path_params["chart"]
    if chart not in CSV_HEADERS:
        return PlainTextResponse("No such chart.", status_code=404)
    period = _period(request)
    rows = await run_in_threadpool(_csv_rows, _settings(request), period, chart)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_HEADERS[chart])
    writer.writerows(rows)
    escalations.audit(request.state.user.username, "insights.csv", None, None,
                      {"chart": chart, "from": period.start.isoformat(), "to": period.end.isoformat()},
                      url=_settings(request).db_url)
    name = f"mesocare-{chart}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


# ---------- review ----------
def _threshold(request: Request) -> float:
    default = review.fallback_threshold()
    try:
        value = float(request.query_params.get("below", default))
    except ValueError:
        return default
    return min(max(value, 0.0), 1.0)


@login_required()
async def review_page(request: Request) -> Response:
    period, threshold = _period(request), _threshold(request)
    show_labelled = request.query_params.get("labelled") == "1"
    s = _settings(request)
    q = await run_in_threadpool(review.queue, s.db_url, s.tracker_db_url, period, threshold, show_labelled)
    escalations.audit(request.state.user.username, "review.view", None, None,
                      {"from": period.start.isoformat(), "to": period.end.isoformat(),
                       "shown": len(q.items)}, url=s.db_url)
    flash = await run_in_threadpool(pop_flash, request)
    return _render(request, "review.html", {
        "period": period, "threshold": threshold, "queue": q, "show_labelled": show_labelled,
        "intents": review.contract_intents(), "not_about_it": review.NOT_ABOUT_IT, "flash": flash,
        "back": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    })


def _safe_back(target: str) -> str:
    return target if target.startswith("/review") and "\\" not in target else "/review"


@login_required()
async def review_label(request: Request) -> Response:
    form = await request.form()
    s, who = _settings(request), request.state.user.username
    back = _safe_back(str(form.get("back", "/review")))
    try:
        event_id = int(str(form.get("event_id", "")))
        label = await run_in_threadpool(
            review.save_label, s.db_url, s.tracker_db_url, event_id, str(form.get("intent", "")),
            form.get("missed_red_flag") == "1", who)
        flash = f"Message {event_id} labelled {label['intent']}" + (
            " and sent to the clinical review list." if label["missed_red_flag"] else ".")
    except (ValueError, review.LabelError) as exc:
        flash = f"Not saved: {exc}"
    await run_in_threadpool(set_flash, request, flash)
    return RedirectResponse(back, status_code=303)


@require_admin
async def clinical_page(request: Request) -> Response:
    s = _settings(request)
    items = await run_in_threadpool(review.clinical_list, s.db_url, s.tracker_db_url)
    escalations.audit(request.state.user.username, "review.clinical_view", None, None,
                      {"shown": len(items)}, url=s.db_url)
    return _render(request, "review_clinical.html", {"items": items})


ROUTES: list[Route] = [
    Route("/insights", insights_page),
    Route("/insights/{chart}.csv", insights_csv),
    Route("/review", review_page),
    Route("/review/label", review_label, methods=["POST"]),
    Route("/review/clinical", clinical_page),
]
