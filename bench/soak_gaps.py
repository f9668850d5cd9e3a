"""The soak's view of call-leg gaps (pure): when no leg of a meeting was in its call, and which missing messages a
re-join explains.

With the browser connector a bridge crash takes its browser, and with it every call leg, down; the restarted bridge
joins them again. An identity joined again cannot read what was posted before its new join (ACS hides it; the
sandbox does too once no leg of the identity is left in the call), so a Teams message posted while no leg of its
meeting was in the call reaches nobody: unreadable by design, counted here, never hidden. A user whose own leg was
still on its way back when the meeting's reader read a message misses that one too, and is told so ("may be
missing"). Everything else that is missing is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .soak_check import tokens

Interval = tuple[float, float]
Token = tuple[str, int]

READ_LAG_S = 10.0
"""How long a post may wait for the meeting's reader to read it (the idle poll interval): a post made that long before
a crash may still have been unread when the legs went."""


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _bridge_leg(participant: Mapping[str, Any]) -> bool:
    """An ACS identity in the chat: in the soak, only the bridge's legs are ACS identities."""
    ident = participant.get("communicationIdentifier") or {}
    return str(ident.get("rawId", "")).startswith("8:acs:")


def _raw_id(participant: Mapping[str, Any]) -> str:
    return str((participant.get("communicationIdentifier") or {}).get("rawId", ""))


def leg_gaps(messages: Iterable[Mapping[str, Any]], end: float) -> list[Interval]:
    """Spans, after the first leg joined, in which no bridge identity was in the meeting's chat, from the thread's
    participantAdded / participantRemoved messages (the chat follows the call); one still open closes at `end`."""
    present: set[str] = set()
    gaps: list[Interval] = []
    opened: float | None = None
    joined = False
    for message in sorted(messages, key=lambda m: int(m.get("sequenceId", 0))):
        kind = message.get("type")
        if kind not in ("participantAdded", "participantRemoved"):
            continue
        legs = [_raw_id(p) for p in message.get("content", {}).get("participants", []) if _bridge_leg(p)]
        if not legs:
            continue
        at = epoch(str(message["createdOn"]))
        if kind == "participantAdded":
            present.update(legs)
            joined = True
            if opened is not None:
                gaps.append((opened, at))
                opened = None
        else:
            present.difference_update(legs)
            if joined and not present and opened is None:
                opened = at
    if opened is not None:
        gaps.append((opened, end))
    return gaps


def post_times(messages: Iterable[Mapping[str, Any]]) -> dict[Token, float]:
    """When each token first appeared in the thread (its message's createdOn)."""
    found: dict[Token, float] = {}
    for message in messages:
        if message.get("type") not in ("text", "html"):
            continue
        at = epoch(str(message["createdOn"]))
        for token in tokens(str(message.get("content", {}).get("message", ""))):
            found.setdefault(token, at)
    return found


def within(at: float, spans: Iterable[Interval]) -> bool:
    return any(start <= at <= end for start, end in spans)


def away_spans(events: Sequence[tuple[str, float]], kills: Iterable[float], end: float) -> list[Interval]:
    """When a user may have been out of the reader's reach: from READ_LAG_S before each crash until their session
    was in the call again, and from each time their session left the call until it was back (events: (state, at),
    in order)."""
    spans: list[Interval] = []
    back = [at for state, at in events if state == "in_call"]
    for killed in kills:
        again = next((at for at in back if at > killed), end)
        spans.append((killed - READ_LAG_S, again))
    out: float | None = None
    seen_in = False
    for state, at in events:
        if state == "in_call":
            seen_in = True
            if out is not None:
                spans.append((out - READ_LAG_S, at))
                out = None
        elif seen_in and out is None:
            out = at
    if out is not None:
        spans.append((out - READ_LAG_S, end))
    return spans


@dataclass
class GapReport:
    """Per meeting: the spans with no leg in the call, and the Teams posts made in them."""

    gaps: dict[int, list[Interval]] = field(default_factory=dict)
    unreadable: dict[int, list[Token]] = field(default_factory=dict)
    unread: dict[int, list[Token]] = field(default_factory=dict)
    """Teams posts the bridge handed to no user at all: those in a gap, and those still unread when a crash took
    the legs (the reader reads a quiet meeting every poll_idle_s)."""

    @property
    def longest_s(self) -> float:
        return max((end - start for spans in self.gaps.values() for start, end in spans), default=0.0)

    def to_json(self) -> dict[str, Any]:
        spans = [s for spans in self.gaps.values() for s in spans]
        return {
            "gaps": len(spans),
            "meetingsWithGaps": sum(1 for spans in self.gaps.values() if spans),
            "longestGapS": round(self.longest_s, 2),
            "totalGapS": round(sum(end - start for start, end in spans), 2),
            "teamsPostsUnreadable": sum(len(t) for t in self.unreadable.values()),
            "teamsPostsReachingNobody": sum(len(t) for t in self.unread.values()),
        }


def gap_report(
    threads: Mapping[int, Sequence[Mapping[str, Any]]], end: float, handed: Mapping[int, set[Token]]
) -> GapReport:
    """`handed`: per meeting, the tokens the bridge stored a delivery of for anyone."""
    report = GapReport()
    for meeting, messages in threads.items():
        gaps = leg_gaps(messages, end)
        posts = {t: at for t, at in post_times(messages).items() if t[0].startswith("t")}
        report.gaps[meeting] = gaps
        report.unreadable[meeting] = [t for t, at in posts.items() if within(at, gaps)]
        report.unread[meeting] = [t for t in posts if t not in handed.get(meeting, set())]
    return report


def excusable(
    missing: Iterable[Token],
    times: Mapping[Token, float],
    fanned_to_user: set[Token],
    fanned_to_anyone: set[Token],
    user_away: Sequence[Interval],
    meeting_down: Sequence[Interval],
) -> set[Token]:
    """Of the tokens a user never got, those a re-join explains: the reader never handed them to this user (no
    delivery for them was stored) and they were posted while the user was away from the call, or, for those it
    handed to nobody, while the meeting's legs were going or gone. One stored for the user and not delivered is lost."""
    excused = set()
    for token in missing:
        at = times.get(token)
        if at is None or token in fanned_to_user:
            continue
        spans = user_away if token in fanned_to_anyone else meeting_down
        if within(at, spans):
            excused.add(token)
    return excused
