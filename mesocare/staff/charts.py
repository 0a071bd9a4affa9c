"""Small server-rendered SVG charts (no JavaScript, no library): each has a <title> and <desc>, a text
label and the value on every bar, and uses presentation attributes only (the staff CSP allows no inline
style)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from html import escape

from markupsafe import Markup

WIDTH = 720
BAR_H, GAP = 20, 6
LABEL_W = 190
VALUE_W = 90
COLOR = "#1d3557"
COLOR_2 = "#8da9c4"
TARGET_COLOR = "#b00020"
OVER_COLOR = "#d9534f"
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _open(chart_id: str, title: str, desc: str, height: int) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{chart_id}" role="img" '
            f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
            f'aria-labelledby="{chart_id}-title {chart_id}-desc" {FONT}>'
            f'<title id="{chart_id}-title">{escape(title)}</title>'
            f'<desc id="{chart_id}-desc">{escape(desc)}</desc>')


def _empty(chart_id: str, title: str) -> Markup:
    return Markup(_open(chart_id, title, "No data in this period.", 40)
                  + '<text x="0" y="24" fill="#5b6472">No data in this period.</text></svg>')


def bar_chart(chart_id: str, title: str, rows: Sequence[tuple[str, float]],
              fmt: Callable[[float], str] = _num) -> Markup:
    """Horizontal bars, one per (label, value), largest scale = largest value."""
    if not rows:
        return _empty(chart_id, title)
    top = max(v for _, v in rows) or 1
    span = WIDTH - LABEL_W - VALUE_W
    height = len(rows) * (BAR_H + GAP) + GAP
    desc = "; ".join(f"{label}: {fmt(v)}" for label, v in rows)
    parts = [_open(chart_id, title, desc, height)]
    for i, (label, value) in enumerate(rows):
        y = GAP + i * (BAR_H + GAP)
        w = max(span * value / top, 1 if value else 0)
        parts.append(
            f'<g class="bar"><text x="{LABEL_W - 8}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{COLOR}"/>'
            f'<text x="{LABEL_W + w + 6:.1f}" y="{y + 14}">{escape(fmt(value))}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def day_chart(chart_id: str, title: str, rows: Sequence[tuple[date, int]]) -> Markup:
    """Columns per day; the axis shows the first, last and a few days between, and the peak value."""
    if not rows:
        return _empty(chart_id, title)
    height, top_pad, axis_h, left = 200, 20, 34, 48
    plot_h, plot_w = height - top_pad - axis_h, WIDTH - left - 10
    top = max(v for _, v in rows) or 1
    step = plot_w / len(rows)
    total = sum(v for _, v in rows)
    desc = (f"{total:,} conversation-days from {rows[0][0].isoformat()} to {rows[-1][0].isoformat()}; "
            f"busiest day {max(rows, key=lambda r: r[1])[0].isoformat()} with {top:,}.")
    parts = [_open(chart_id, title, desc, height),
             f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{WIDTH - 10}" y2="{top_pad + plot_h}" '
             'stroke="#5b6472"/>',
             f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end">{top:,}</text>',
             f'<text x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end">0</text>']
    every = max(1, round(len(rows) / 6))
    for i, (day, value) in enumerate(rows):
        h = plot_h * value / top
        x = left + i * step
        parts.append(f'<rect x="{x + step * 0.1:.1f}" y="{top_pad + plot_h - h:.1f}" '
                     f'width="{max(step * 0.8, 0.5):.1f}" height="{h:.1f}" fill="{COLOR}">'
                     f'<title>{day.isoformat()}: {value:,}</title></rect>')
        if i % every == 0 or i == len(rows) - 1:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{height - 12}" text-anchor="middle">'
                         f'{day.strftime("%d %b")}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def target_chart(chart_id: str, title: str,
                 rows: Sequence[tuple[str, float | None, float | None, float | None]]) -> Markup:
    """Per row (label, median, p90, target) in minutes: two bars and a red target mark. Each row has its
    own scale (its largest value), so a row reads as "how far from its target"; a bar over the target is
    drawn in red."""
    if not rows:
        return _empty(chart_id, title)
    span = WIDTH - LABEL_W - VALUE_W
    row_h = 2 * BAR_H + 3 * GAP
    height = len(rows) * row_h + 24
    desc = "; ".join(
        f"{label}: median {_minutes(med)}, 90th percentile {_minutes(p90)}, target {_minutes(target)}"
        for label, med, p90, target in rows)
    parts = [_open(chart_id, title, desc, height),
             f'<rect x="{LABEL_W}" y="4" width="10" height="10" fill="{COLOR}"/>'
             f'<text x="{LABEL_W + 14}" y="13">median</text>'
             f'<rect x="{LABEL_W + 80}" y="4" width="10" height="10" fill="{COLOR_2}"/>'
             f'<text x="{LABEL_W + 94}" y="13">90th percentile</text>'
             f'<rect x="{LABEL_W + 210}" y="2" width="3" height="14" fill="{TARGET_COLOR}"/>'
             f'<text x="{LABEL_W + 218}" y="13">target</text>'
             f'<rect x="{LABEL_W + 270}" y="4" width="10" height="10" fill="{OVER_COLOR}"/>'
             f'<text x="{LABEL_W + 284}" y="13">over target</text>']
    for i, (label, med, p90, target) in enumerate(rows):
        y = 24 + i * row_h
        top = max(med or 0, p90 or 0, target or 0) * 1.1 or 1
        parts.append(f'<g class="bar"><text x="{LABEL_W - 8}" y="{y + BAR_H + 4}" text-anchor="end">'
                     f'{escape(label)}</text>')
        if med is None:
            parts.append(f'<text x="{LABEL_W + 6}" y="{y + BAR_H + 4}" fill="#5b6472">no cases</text>')
        for j, (value, color) in enumerate(((med, COLOR), (p90, COLOR_2))):
            if value is None:
                continue
            yy = y + j * (BAR_H + GAP)
            w = span * value / top
            fill = OVER_COLOR if target is not None and value > target else color
            parts.append(f'<rect x="{LABEL_W}" y="{yy}" width="{w:.1f}" height="{BAR_H}" fill="{fill}"/>'
                         f'<text x="{LABEL_W + w + 6:.1f}" y="{yy + 14}">{_minutes(value)}</text>')
        if target is not None:
            tx = LABEL_W + span * target / top
            parts.append(f'<rect x="{tx - 1:.1f}" y="{y - 2}" width="3" height="{2 * BAR_H + GAP + 4}" '
                         f'fill="{TARGET_COLOR}"><title>target {_minutes(target)}</title></rect>'
                         f'<text x="{tx + 5:.1f}" y="{y + 2 * BAR_H + GAP + 10}" fill="{TARGET_COLOR}">'
                         f'{_minutes(target)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _minutes(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 120:
        return f"{value:.1f} min" if value < 10 else f"{value:.0f} min"
    return f"{value / 60:.1f} h"


def percent(value: float) -> str:
    return f"{value * 100:.1f} %"
