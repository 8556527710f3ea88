"""Calendar windows (routing/windows.py), with instants chosen around the edges.

Covers: a minute window; day, week (from Monday) and month windows in UTC and in other zones;
a month window resets at local midnight of the first (also across a year end); day windows of
23 and 25 hours across DST changes; a zone that skips midnight; an unknown window kind.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from switchboard.routing import windows


def at(text: str, zone: str = "UTC") -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(zone)).timestamp()


def test_minute_window() -> None:
    now = at("2026-12-02T10:15:42")
    span = windows.minute(now)
    assert span.start == at("2026-12-02T10:15:00")
    assert span.end == at("2026-12-02T10:16:00")
    assert windows.minute(span.end).label != span.label


@pytest.mark.parametrize(
    ("window", "zone", "now", "label", "start", "end"),
    [
        ("day", "UTC", "2026-12-02T23:59:59", "2026-12-02", "2026-12-02", "2026-12-03"),
        ("week", "UTC", "2026-12-02T12:00:00", "2026-11-30", "2026-11-30", "2026-12-07"),
        ("week", "UTC", "2026-12-06T23:59:59", "2026-11-30", "2026-11-30", "2026-12-07"),
        ("month", "UTC", "2026-02-28T23:59:59", "2026-02-01", "2026-02-01", "2026-03-01"),
        ("month", "UTC", "2026-12-31T12:00:00", "2026-12-01", "2026-12-01", "2027-01-01"),
        ("month", "Europe/Berlin", "2026-01-31T23:30:00", "2026-01-01", "2026-01-01", "2026-02-01"),
        ("month", "Asia/Tokyo", "2026-03-01T00:00:00", "2026-03-01", "2026-03-01", "2026-04-01"),
        (
            "day",
            "America/New_York",
            "2026-03-08T12:00:00",
            "2026-03-08",
            "2026-03-08",
            "2026-03-09",
        ),
    ],
)
def test_calendar_windows(  # noqa: PLR0917
    window: str, zone: str, now: str, label: str, start: str, end: str
) -> None:
    span = windows.calendar(window, zone, at(now, zone))
    assert span.label == label
    assert span.start == at(f"{start}T00:00:00", zone)
    assert span.end == at(f"{end}T00:00:00", zone)


def test_month_resets_at_local_midnight_of_the_first() -> None:
    zone = "Europe/Berlin"
    last = at("2026-11-30T23:59:59", zone)
    first = at("2026-12-01T00:00:00", zone)
    assert windows.calendar("month", zone, last).label == "2026-11-01"
    assert windows.calendar("month", zone, first).label == "2026-12-01"
    # 23:00 UTC on Nov 30 is already December in Berlin, still November in UTC.
    utc = at("2026-11-30T23:00:00")
    assert windows.calendar("month", zone, utc).label == "2026-12-01"
    assert windows.calendar("month", "UTC", utc).label == "2026-11-01"
    assert windows.calendar("month", zone, last).end == first


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Berlin", "2026-03-29", 23),
        ("Europe/Berlin", "2026-10-25", 25),
        ("America/New_York", "2026-11-01", 25),
        ("UTC", "2026-03-29", 24),
    ],
)
def test_day_length_across_dst(zone: str, day: str, hours: int) -> None:
    span = windows.calendar("day", zone, at(f"{day}T12:00:00", zone))
    assert span.end - span.start == hours * 3600


def test_zone_that_skips_midnight() -> None:
    # America/Santiago moved its clocks from 24:00 to 01:00 on 2026-09-06.
    zone = "America/Santiago"
    span = windows.calendar("day", zone, at("2026-09-06T12:00:00", zone))
    previous = windows.calendar("day", zone, span.start - 1)
    assert previous.end == span.start
    assert span.end - span.start == 23 * 3600


def test_unknown_window() -> None:
    with pytest.raises(ValueError, match="day, week or month"):
        windows.calendar("year", "UTC", 0)


def test_rfc3339() -> None:
    assert windows.rfc3339(at("2026-12-03T00:00:00")) == "2026-12-03T00:00:00Z"
    berlin = at("2026-12-03T00:00:00", "Europe/Berlin")
    assert windows.rfc3339(berlin, "Europe/Berlin") == "2026-12-03T00:00:00+01:00"
