"""Quiet hours (bot/quiet_hours.py): the window's parsing, a number's zones, and when a held text may go, by example
(one zone, several, a clock change) and by property (the answer is a moment nobody is in their night, and the first)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.quiet_hours import Window, parse_window, quiet_until, zones_for

NIGHT = Window(time(21), time(8))
NEW_YORK, LOS_ANGELES = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles")
PROFILE = settings(max_examples=300, deadline=None)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("21:00-08:00", NIGHT),
        (" 22:30 - 07:15 ", Window(time(22, 30), time(7, 15))),
        ("13:00-14:00", Window(time(13), time(14))),
        ("21-08", NIGHT),
        ("21:00:30-21:00:45", Window(time(21, 0, 30), time(21, 0, 45))),
        ("off", None),
        ("", None),
    ],
)
def test_parse_window(text: str, window: Window | None) -> None:
    assert parse_window(text) == window


@pytest.mark.parametrize("text", ["21:00", "21h-08h", "9pm-8am", "25:00-08:00", "08:00-08:00", "21:00+01:00-08:00"])
def test_parse_window_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_window(text)


def test_a_window_says_whether_a_local_time_is_in_it() -> None:
    assert NIGHT.quiet_at(time(21)) and NIGHT.quiet_at(time(3)) and NIGHT.quiet_at(time(7, 59, 59))
    assert not NIGHT.quiet_at(time(8)) and not NIGHT.quiet_at(time(20, 59))
    day = Window(time(13), time(14))
    assert day.quiet_at(time(13, 30)) and not day.quiet_at(time(14)) and not day.quiet_at(time(3))
    assert NIGHT.length() == timedelta(hours=11) and day.length() == timedelta(hours=1)
    assert str(NIGHT) == "21:00-08:00"


def test_zones_for_a_number() -> None:
    assert zones_for("+12125550100") == (NEW_YORK,)
    assert zones_for("+33612345678") == (ZoneInfo("Europe/Paris"),)
    assert len(zones_for("+18005550100")) > 10  # toll-free: anywhere in the plan
    # Nothing known: the configured zone.
    assert zones_for("+15550100", "Europe/Berlin") == (ZoneInfo("Europe/Berlin"),)
    assert zones_for("not a number") == (ZoneInfo("UTC"),)


def test_one_zone_held_until_its_morning() -> None:
    # 23:30 in New York (EST, UTC-5) is 04:30 UTC: the morning is 08:00 EST, 13:00 UTC.
    assert quiet_until(utc(2026, 1, 15, 4, 30), NIGHT, [NEW_YORK]) == utc(2026, 1, 15, 13)
    # 07:59 there: a minute to go.
    assert quiet_until(utc(2026, 1, 15, 12, 59), NIGHT, [NEW_YORK]) == utc(2026, 1, 15, 13)
    # Daytime: now.
    assert quiet_until(utc(2026, 1, 15, 13), NIGHT, [NEW_YORK]) is None
    assert quiet_until(utc(2026, 1, 15, 18), NIGHT, [NEW_YORK]) is None
    assert quiet_until(utc(2026, 1, 15, 4, 30), None, [NEW_YORK]) is None


def test_several_zones_the_night_of_all_of_them() -> None:
    # 05:00 UTC is 21:00 in Los Angeles but midnight in New York: quiet from New York's 21:00 (02:00 UTC)...
    both = [NEW_YORK, LOS_ANGELES]
    assert quiet_until(utc(2026, 1, 15, 2), NIGHT, both) == utc(2026, 1, 15, 16)
    # ... until Los Angeles' 08:00 (16:00 UTC), though New York woke at 13:00 UTC.
    assert quiet_until(utc(2026, 1, 15, 14), NIGHT, both) == utc(2026, 1, 15, 16)
    assert quiet_until(utc(2026, 1, 15, 16), NIGHT, both) is None
    assert quiet_until(utc(2026, 1, 16, 1, 59), NIGHT, both) is None


def test_a_clock_change_inside_the_night() -> None:
    # New York springs forward on 8 March 2026 at 02:00: the night of the 7th ends at 08:00 EDT (12:00 UTC).
    assert quiet_until(utc(2026, 3, 8, 3), NIGHT, [NEW_YORK]) == utc(2026, 3, 8, 12)
    # and falls back on 1 November: that night ends at 08:00 EST (13:00 UTC).
    assert quiet_until(utc(2026, 11, 1, 5), NIGHT, [NEW_YORK]) == utc(2026, 11, 1, 13)


def test_nights_that_cover_the_whole_day_leave_the_earliest_zone_to_decide() -> None:
    # Twelve hours of night in zones twelve hours apart leave no hour free for both: the eastern one decides.
    east, west = ZoneInfo("Etc/GMT-12"), ZoneInfo("Etc/GMT")  # UTC+12 and UTC
    long_night = Window(time(18), time(7))
    now = utc(2026, 1, 15, 8)  # 20:00 in the east, 08:00 in the west
    assert quiet_until(now, long_night, [east, west]) == utc(2026, 1, 15, 19)  # 07:00 at UTC+12


# ---------------------------------------------------------------- properties

ZONES = st.sampled_from(
    ["America/New_York", "America/Los_Angeles", "Pacific/Honolulu", "Europe/Paris", "Asia/Kolkata", "Australia/Sydney"]
).map(ZoneInfo)
MOMENTS = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)
TIMES = st.times().map(lambda t: t.replace(microsecond=0))
WINDOWS = st.tuples(TIMES, TIMES).filter(lambda p: p[0] != p[1]).map(lambda p: Window(*p))


def quiet_somewhere(at: datetime, window: Window, zones: list[tzinfo]) -> bool:
    return any(window.quiet_at(at.astimezone(z).time()) for z in zones)


def leaves_a_gap(at: datetime, window: Window, zones: list[tzinfo]) -> bool:
    """The zones' nights together surely leave part of the day free (two hours' margin for clock changes)."""
    offsets = [at.astimezone(z).utcoffset() or timedelta(0) for z in zones]
    return window.length() + (max(offsets) - min(offsets)) < timedelta(hours=22)


@PROFILE
@given(MOMENTS, WINDOWS, st.lists(ZONES, min_size=1, max_size=3, unique=True))
def test_the_answer_is_now_or_the_first_moment_no_zone_is_in_its_night(
    now: datetime, window: Window, zones: list[tzinfo]
) -> None:
    until = quiet_until(now, window, zones)
    if not quiet_somewhere(now, window, zones):
        assert until is None
        return
    if not leaves_a_gap(now, window, zones):
        # The earliest zone alone decides: held until its morning, or not at all if it is day there.
        assert until is None or until > now
        return
    assert until is not None and until > now
    assert until - now <= timedelta(days=1)
    assert not quiet_somewhere(until, window, zones)
    # The first such moment: a second earlier some zone was still in its night.
    assert quiet_somewhere(until - timedelta(seconds=1), window, zones)


@PROFILE
@given(MOMENTS, WINDOWS, ZONES)
def test_one_zone_waits_no_longer_than_the_window(now: datetime, window: Window, zone: tzinfo) -> None:
    until = quiet_until(now, window, [zone])
    assert (until is None) == (not window.quiet_at(now.astimezone(zone).time()))
    if until is not None:
        # A clock change inside the night can lengthen it by an hour.
        assert until - now <= window.length() + timedelta(hours=1)
