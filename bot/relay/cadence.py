"""When a meeting's thread is read, pure: by polling, or on chat events with a slow safety read while they arrive."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from ..config import RelaySection

Key = tuple[str, str]
"""A message id and version: one state of a message, as a read finds it and as a chat event announces it."""

MIN_PAUSE = 0.1
"""Of an interval: reads that take longer than the interval still leave the service this much of a pause."""
SLOTS = 50
"""Quiet reads fall on one of this many instants of each interval, a meeting's own by its id. A thousand meetings
then wake the reader 50 times per interval, twenty reads at a time, rather than a thousand times one: each wake-up
of a loop that slept costs about as much CPU again as the read it makes (measured: 0.95 against 0.37 ms per read)."""
EVENT_GRACE_S = 2.0
"""How long after a message changed its chat event may still arrive (Event Grid delivers within a second or so). A
read that finds a message older than this that no event announced shows that the meeting's events are not
arriving; a younger one is judged when its grace runs out. Misjudged, a meeting is polled until its next few
events arrive: the grace only keeps a read woken by one event from mistaking the next, still on its way."""
ANNOUNCED_FOR_S = 10.0
"""An announced message that reads do not find yet (the listing lags the event) is read for this long at the
active interval, then given up on: the safety read will find it."""
REMEMBER_S = 300.0
"""How long what was read stays known, so that a repeated event for it starts no reading."""
TRUST_AFTER = 3
"""Messages whose events arrived, with no miss between them, before a meeting's events are relied on again."""


@dataclass(frozen=True)
class Watch:
    """What a meeting's reader knows of its chat events: whether they arrive, and what is still to match."""

    since: datetime
    """Messages that changed before the reader began are not judged: their events went to an earlier reader."""
    trusted: bool = True
    """Events arrive: the thread is read when they say so, and by a safety read every poll_safety_s."""
    streak: int = 0
    """While not trusted: messages since the last miss whose events did arrive."""
    missed_at: float | None = None
    """When a read last found a message no event announced (loop time)."""
    announced: Mapping[Key, float] = field(default_factory=dict)
    """Announced, not read yet: when the event came."""
    unannounced: Mapping[Key, float] = field(default_factory=dict)
    """Read, no event yet: until when its event may still come."""
    done: Mapping[Key, float] = field(default_factory=dict)
    """Read and settled (its event came, or it was a miss): when."""


def announce(watch: Watch, keys: Iterable[Key], now: float) -> Watch:
    """Chat events announced these messages. A repeated event, or one for a message already read, changes nothing
    but the count of events that came."""
    announced, unannounced, done = dict(watch.announced), dict(watch.unannounced), dict(watch.done)
    streak = watch.streak
    for key in keys:
        if key in done or key in announced:
            continue
        if unannounced.pop(key, None) is not None:
            done[key] = now  # read first, its event in time after all
            streak += 1
        else:
            announced[key] = now
    return replace(watch, announced=announced, unannounced=unannounced, done=done, streak=streak)


def found(watch: Watch, messages: Sequence[tuple[Key, datetime]], read_at: datetime, now: float) -> Watch:
    """A read found these messages (key, when each changed), new to the reader. One that was announced is matched;
    one that was not has until its change plus EVENT_GRACE_S for its event, judged by `settle`."""
    announced, unannounced, done = dict(watch.announced), dict(watch.unannounced), dict(watch.done)
    streak = watch.streak
    for key, changed in messages:
        if changed < watch.since or key in done or key in unannounced:
            continue
        if announced.pop(key, None) is not None:
            done[key] = now
            streak += 1
        else:
            left = EVENT_GRACE_S - (read_at - changed).total_seconds()
            unannounced[key] = now + max(0.0, left)
    return replace(watch, announced=announced, unannounced=unannounced, done=done, streak=streak)


def settle(watch: Watch, now: float) -> Watch:
    """Misses judged and old entries forgotten: a message whose event did not come in time means the meeting's
    events are not arriving, so it is polled; once TRUST_AFTER events come with no miss, they are relied on again."""
    misses = [k for k, until in watch.unannounced.items() if until <= now]
    unannounced = {k: until for k, until in watch.unannounced.items() if until > now}
    announced = {k: at for k, at in watch.announced.items() if now - at < ANNOUNCED_FOR_S}
    done = {k: at for k, at in watch.done.items() if now - at < REMEMBER_S} | dict.fromkeys(misses, now)
    trusted, streak, missed_at = watch.trusted, watch.streak, watch.missed_at
    if misses:
        trusted, streak, missed_at = False, 0, now
    elif not trusted and streak >= TRUST_AFTER:
        trusted, streak = True, 0
    return replace(
        watch,
        trusted=trusted,
        streak=streak,
        missed_at=missed_at,
        announced=announced,
        unannounced=unannounced,
        done=done,
    )


def slot_of(meeting_id: str) -> float:
    """The meeting's instant in each interval, as a fraction of it."""
    return (zlib.crc32(meeting_id.encode()) % SLOTS) / SLOTS


def _after(began: float, now: float, interval: float) -> float:
    # Counted from the start of the read: a message waits at most one interval for the read that finds it.
    return max(interval - (now - began), interval * MIN_PAUSE)


def _slotted(began: float, now: float, interval: float, slot: float) -> float:
    # The first of the meeting's instants after the read began, at most one interval after it; or, when that is
    # too soon (a read began just before its instant, or took long), the first one after the shortest pause.
    offset, shortest = slot * interval, interval * MIN_PAUSE
    at = (math.floor((began - offset) / interval) + 1) * interval + offset
    if at - now < shortest:
        at = math.ceil((now + shortest - offset) / interval) * interval + offset
    return at - now


def poll_pause(
    began: float, now: float, last_news: float | None, watch: Watch | None, slot: float, settings: RelaySection
) -> float:
    """Seconds until the next read (loop times). Without events (`watch` None) or while they do not arrive: the
    active interval after recent news or a miss, else the idle one. While they arrive: the safety interval, or the
    active one while an announced message is not found yet; and no later than a found message's grace runs out."""
    if watch is not None and watch.announced:
        return _after(began, now, settings.poll_active_s)
    if watch is not None and watch.trusted:
        pause = _slotted(began, now, settings.poll_safety_s, slot)
    else:
        missed_at = watch.missed_at if watch is not None else None
        recent = max((t for t in (last_news, missed_at) if t is not None), default=None)
        if recent is not None and now - recent <= settings.idle_after_s:
            pause = _after(began, now, settings.poll_active_s)
        else:
            pause = _slotted(began, now, settings.poll_idle_s, slot)
    if watch is not None and watch.unannounced:
        pause = min(pause, min(watch.unannounced.values()) - now)
    return pause
