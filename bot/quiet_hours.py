"""Quiet hours (pure): the night in a phone number's time zones, and when a text the bridge starts may go instead.

The zones come from `phonenumbers`' time zone data: one for most mobile numbers, several for a number whose area
spans more (a toll-free number, most of Russia's and Australia's mobiles). A number is quiet while it is night in
any of its zones, so the hold starts with the earliest zone's night and ends with the last one's morning: nobody
the number may belong to is texted at night. Only where the zones' nights together leave no hour of the day free
does the earliest zone's night alone decide, or the text would never go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import NumberParseException
from phonenumbers import timezone as number_zones

UNKNOWN_ZONE = "Etc/Unknown"


@dataclass(frozen=True)
class Window:
    """A stretch of local time each day, start included, end excluded; it wraps midnight when start > end."""

    start: time
    end: time

    def quiet_at(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def length(self) -> timedelta:
        day = datetime(2000, 1, 1)
        span = datetime.combine(day, self.end) - datetime.combine(day, self.start)
        return span if span > timedelta(0) else span + timedelta(days=1)

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


def _clock(value: time) -> str:
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


def parse_window(text: str) -> Window | None:
    """ "21:00-08:00" (seconds allowed: "21:00:30"); "" or "off" for none. ValueError saying what is wrong."""
    cleaned = text.strip().lower()
    if cleaned in ("", "off"):
        return None
    start_text, dash, end_text = cleaned.partition("-")
    if not dash:
        raise ValueError(f"{text!r} is not HH:MM-HH:MM (or off)")
    try:
        start, end = time.fromisoformat(start_text.strip()), time.fromisoformat(end_text.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r} is not HH:MM-HH:MM (or off)") from exc
    if start.tzinfo is not None or end.tzinfo is not None:
        raise ValueError(f"{text!r}: the hours are the number's local time, without a zone")
    if start == end:
        raise ValueError(f"{text!r} starts and ends at the same time; write off for no quiet hours")
    return Window(start.replace(microsecond=0), end.replace(microsecond=0))


@lru_cache(maxsize=4096)
def zones_for(number: str, fallback: str = "UTC") -> tuple[tzinfo, ...]:
    """The time zones the number may be in (E.164); `fallback`'s alone when `phonenumbers` knows none."""
    try:
        names = number_zones.time_zones_for_number(phonenumbers.parse(number))
    except NumberParseException:
        names = ()
    zones: list[tzinfo] = []
    for name in names:
        if name == UNKNOWN_ZONE:
            continue
        try:
            zones.append(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return tuple(zones) or (ZoneInfo(fallback),)


def _morning(at: datetime, window: Window, zone: tzinfo) -> datetime:
    """When the night the zone is in at `at` ends (`at` must be in it)."""
    local = at.astimezone(zone)
    day = local.date()
    if window.start > window.end and local.time() >= window.start:
        day += timedelta(days=1)
    end = datetime.combine(day, window.end, tzinfo=zone).astimezone(UTC)
    # A night that ends in a clock change's gap ends when the clock jumps past it; never before `at`.
    return end if end > at else at + timedelta(seconds=1)


def quiet_until(now: datetime, window: Window | None, zones: Sequence[tzinfo]) -> datetime | None:
    """None when a text may go now; else the first moment after which none of the zones is in its night."""
    if window is None or not zones:
        return None
    at = now.astimezone(UTC)
    for _ in range(4 * len(zones) + 4):
        nights = [_morning(at, window, z) for z in zones if window.quiet_at(at.astimezone(z).time())]
        if not nights:
            return at if at > now else None
        at = max(nights)
        if at - now > timedelta(days=1):
            break
    # The nights cover the whole day: the zone whose night starts first (the furthest east) decides alone.
    first = max(zones, key=lambda z: now.astimezone(z).utcoffset() or timedelta(0))
    return _morning(now, window, first) if window.quiet_at(now.astimezone(first).time()) else None
