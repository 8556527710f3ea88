"""Calendar windows: which window an instant falls in, and when it resets. Pure.

Rate limits count per calendar minute (UTC). Budgets count per local day, week (from Monday) or
month of an IANA time zone: a window starts at local midnight, so a day is 23 or 25 hours long
across a DST change, and a month window resets at midnight of the first in that zone. Where a
zone skips midnight (a DST change at 00:00), the window starts at the first instant of the day.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass

MINUTE = "minute"
DAY = "day"
WEEK = "week"
MONTH = "month"


@dataclass(frozen=True, slots=True)
class Span:
    """One window: a label unique within its kind, and its bounds as Unix seconds."""

    label: str
    start: float
    end: float


@functools.lru_cache(maxsize=64)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def minute(now: float) -> Span:
    start = float(int(now // 60) * 60)
    return Span(f"m{int(start)}", start, start + 60.0)


def _midnight(day: dt.date, tz: zoneinfo.ZoneInfo) -> float:
    local = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    # A local midnight inside a DST gap does not exist; fold=0 takes the offset before the
    # change, which is the instant the day starts.
    return local.timestamp()


def calendar(window: str, time_zone: str, now: float) -> Span:
    """The `day`, `week` or `month` window of `time_zone` holding the instant `now`."""
    tz = zone(time_zone)
    today = dt.datetime.fromtimestamp(now, tz).date()
    if window == DAY:
        first, after = today, today + dt.timedelta(days=1)
    elif window == WEEK:
        first = today - dt.timedelta(days=today.weekday())
        after = first + dt.timedelta(days=7)
    elif window == MONTH:
        first = today.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown window {window!r}: use day, week or month")
    return Span(first.isoformat(), _midnight(first, tz), _midnight(after, tz))


def rfc3339(instant: float, time_zone: str = "UTC") -> str:
    """`2026-12-01T00:00:00+01:00`: the instant in the window's own zone."""
    text = dt.datetime.fromtimestamp(instant, zone(time_zone)).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if time_zone == "UTC" else text
