"""One call leg as the browser connector keeps it: what a page's report says, and a state that only moves forward."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...errors import BridgeError, PermanentError, StaleTokenError, TransientError
from ...models import CallEvent, CallState
from ..base import TokenSource
from ..states import FINAL_STATE, Outcome, Verdict, call_state, connection_lost, end_reason, join_error
from .chromium import JoinerPage

Item = CallEvent | BridgeError | None
"""What a watch's queue carries: a change, the error that ends the leg, or None once the connector closes."""


_LIVE = {Verdict.LOBBY: CallState.LOBBY, Verdict.CONNECTED: CallState.CONNECTED}


@dataclass(frozen=True)
class Reading:
    """What one report of the joiner page says: the meeting's thread, a live state, or the leg's end."""

    thread_id: str | None = None
    state: CallState | None = None
    end: Outcome | None = None


def read_report(body: Mapping[str, object]) -> Reading:
    """A report of joiner.js (`{kind: state|ended|lost|error, ...}`) through the one table (calls/states.py)."""
    raw_thread = body.get("threadId")
    thread_id = raw_thread if isinstance(raw_thread, str) and raw_thread else None
    kind = body.get("kind")
    if kind == "state":
        verdict = call_state(body.get("state"))
        return Reading(thread_id, state=_LIVE.get(verdict) if verdict is not None else None)
    if kind == "ended":
        return Reading(thread_id, end=end_reason(body.get("code"), body.get("subCode")))
    if kind == "lost":
        return Reading(thread_id, end=connection_lost(body.get("reason")))
    if kind == "error":
        return Reading(thread_id, end=join_error(body.get("code"), body.get("subCode"), str(body.get("message") or "")))
    return Reading(thread_id)


@dataclass(eq=False)
class Leg:
    id: str
    token: str | TokenSource
    page: JoinerPage | None = None
    state: CallState | None = None
    """None while joining; then lobby, connected, and one final state."""
    reason: str | None = None
    thread_id: str | None = None
    error: BridgeError | None = None
    """Set when the leg ended with a new token needed: watch raises it instead of yielding a final state."""
    joining: bool = True
    """Until join returns: its page is not recycled under it, even if the leg ends meanwhile."""
    watchers: set[asyncio.Queue[Item]] = field(default_factory=set)

    @property
    def over(self) -> bool:
        return self.state is not None and self.state.final

    def event(self) -> CallEvent:
        return CallEvent(self.id, self.state or CallState.LOBBY, self.reason)

    def advance(self, state: CallState) -> bool:
        """Lobby, then connected: a report that arrives late (lobby after connected) changes nothing."""
        if self.over or self.state == state or (self.state == CallState.CONNECTED and state == CallState.LOBBY):
            return False
        self.state = state
        return True

    def end(self, outcome: Outcome) -> bool:
        """The leg's one final state; False if it had ended already."""
        if self.over:
            return False
        self.state, self.reason = FINAL_STATE[outcome.verdict], outcome.reason
        if outcome.verdict == Verdict.NEW_TOKEN:
            self.error = StaleTokenError(outcome.reason or "the service refused the call's token")
        return True

    def tell(self, item: Item) -> None:
        for queue in self.watchers:
            queue.put_nowait(item)


def join_failure(leg: Leg) -> BridgeError:
    """Why a join ended before it reached the lobby or the call."""
    if leg.error is not None:
        return leg.error
    reason = leg.reason or "the call ended as it was joined"
    if leg.state == CallState.DROPPED:
        return TransientError(reason)
    if leg.state == CallState.LEFT:
        return TransientError("the call was hung up as it was joined")
    return PermanentError(reason)
