"""Clinic configuration (phone numbers, opening hours, how long patient data is kept) from data/clinic.yml."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from mesocare.settings import get_settings

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Clinic:
    name: str
    phone: str
    emergency_number: str
    email: str
    timezone: str
    hours: dict[int, tuple[time, time]] = field(default_factory=dict)  # weekday -> (open, close)
    retention_days: int | None = None  # patient data older than this is purged (None: not set)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, now: datetime | None = None) -> datetime:
        """`now` (aware, or naive UTC; default: current time) in the clinic's time zone."""
        if now is None:
            now = datetime.now(self.tz)
        elif now.tzinfo is None:
            now = now.replace(tzinfo=ZoneInfo("UTC"))
        return now.astimezone(self.tz)

    def is_open(self, now: datetime | None = None) -> bool:
        local = self.local(now)
        span = self.hours.get(local.weekday())
        return span is not None and span[0] <= local.time() < span[1]

    def next_opening(self, now: datetime | None = None) -> datetime | None:
        """The next time the clinic opens after `now` (None if it has no hours)."""
        local = self.local(now)
        for offset in range(8):
            day: date = (local + timedelta(days=offset)).date()
            span = self.hours.get(day.weekday())
            if span is None:
                continue
            opening = datetime.combine(day, span[0], tzinfo=self.tz)
            if opening > local:
                return opening
        return None

    def describe_next_opening(self, now: datetime | None = None) -> str:
        """Plain words for the next opening, e.g. "tomorrow at 09:00" or "on Monday at 09:00"."""
        opening = self.next_opening(now)
        if opening is None:
            return "as soon as the clinic opens"
        local = self.local(now)
        delta_days = (opening.date() - local.date()).days
        at = opening.strftime("%H:%M")
        if delta_days == 0:
            return f"today at {at}"
        if delta_days == 1:
            return f"tomorrow at {at}"
        return f"on {DAY_NAMES[opening.weekday()]} at {at}"


def _parse_time(text: str) -> time:
    hh, mm = str(text).split(":")
    return time(int(hh), int(mm))


def retention_days_of(data: dict) -> int | None:
    """`retention_days` from the clinic config: a whole number of days >= 1, or None when absent."""
    value = data.get("retention_days")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("retention_days in the clinic config must be a whole number of days >= 1")
    return value


def parse_clinic(data: dict) -> Clinic:
    hours: dict[int, tuple[time, time]] = {}
    for key, span in (data.get("hours") or {}).items():
        day = DAYS.index(str(key).lower()[:3])
        hours[day] = (_parse_time(span[0]), _parse_time(span[1]))
    return Clinic(
        name=str(data.get("clinic_name", "")),
        phone=str(data["clinic_phone"]),
        emergency_number=str(data["emergency_number"]),
        email=str(data.get("clinic_email", "")),
        timezone=str(data.get("timezone", "UTC")),
        hours=hours,
        retention_days=retention_days_of(data),
    )


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Clinic:
    with open(path, encoding="utf-8") as fh:
        return parse_clinic(yaml.safe_load(fh))


def load_clinic(path: Path | str | None = None) -> Clinic:
    """The clinic config (default: settings.clinic_config), re-read when the file changes."""
    p = Path(path) if path else get_settings().clinic_config
    return _load(str(p), p.stat().st_mtime)
