"""ClientReportedConnector: for apps that join the Teams call themselves and report its state to the bridge."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Collection
from dataclasses import dataclass, field

from ..errors import NotFoundError, PermanentError
from ..models import CallEvent, CallHandle, CallState, Reported, ReportVerdict
from .base import TokenSource, check_join

log = logging.getLogger(__name__)

# Finished calls are remembered so late reports, gets and leaves still find them; beyond this, the oldest go.
MAX_FINISHED_CALLS = 1000
# The app's own call ids a leg has had and replaced: a late report of one of them changes nothing.
MAX_REPLACED = 8

# Within one call of the app's, a leg only moves forward: lobby, then connected, then one final state.
_RANK = {CallState.LOBBY: 0, CallState.CONNECTED: 1}


def _rank(state: CallState | None) -> int:
    return -1 if state is None else _RANK.get(state, 2)


@dataclass(frozen=True)
class Judgement:
    verdict: ReportVerdict
    new_call: bool = False
    """The report is the first of a call the app joined anew: that call replaces the one the leg had."""


def judge(
    current: CallState | None,
    bound: str | None,
    replaced: Collection[str],
    state: CallState,
    client_call: str | None,
) -> Judgement:
    """What one report does to a leg (pure).

    `current` is the leg's state (None: nothing reported since the bridge started), `bound` the app's call id the
    leg's reports have named, `replaced` the app's call ids it named before. A final leg stays final; a call the app
    has replaced is never heard again; within one call, a state older than the current one arrived late and is
    dropped. A report naming a new call id starts that call afresh, in whatever state it reports (the app joined
    again, say after its own network dropped)."""
    if client_call is not None and client_call in replaced:
        return Judgement(ReportVerdict.IGNORED)
    if current is not None and current.final:
        return Judgement(ReportVerdict.IGNORED)
    if client_call is not None and bound is not None and client_call != bound:
        return Judgement(ReportVerdict.SAME if state == current else ReportVerdict.TAKEN, new_call=True)
    if state == current:
        return Judgement(ReportVerdict.SAME)
    if _rank(state) < _rank(current):
        return Judgement(ReportVerdict.IGNORED)
    return Judgement(ReportVerdict.TAKEN)


@dataclass
class _Call:
    call_id: str
    state: CallState | None
    """None for a call taken up after a restart, until its app reports where it stands."""
    thread_id: str | None = None
    reason: str | None = None
    client_call: str | None = None
    """The app's own id of the call its reports are about (the Calling SDK's call.id), once one named it."""
    replaced: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_REPLACED))
    # One queue per open watch; None tells a watch the connector closed.
    watchers: set[asyncio.Queue[CallEvent | None]] = field(default_factory=set)

    def event(self) -> CallEvent:
        assert self.state is not None
        return CallEvent(self.call_id, self.state, self.reason)


class ClientReportedConnector:
    """A CallConnector whose call legs are held by the user's own app (for example one running the Calling SDK).

    ``join`` only registers a call in LOBBY and hands out its id; the app joins the meeting itself and reports
    every state change (the webhook channel's ``call`` event), which ``report`` takes and ``watch`` yields. Tokens
    are not checked here: the app that holds the call authenticates to the bridge by its webhook signature before
    its reports reach this object.

    Calls live in memory. After a restart the bridge watches the calls its sessions name again: a call this object
    never saw is taken up with its state unknown, and its sessions stay where the store left them until the app's
    next report (the app's call did not end because the bridge restarted).
    """

    def __init__(self, max_finished: int = MAX_FINISHED_CALLS) -> None:
        self._calls: dict[str, _Call] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._max_finished = max_finished
        self._closed = False

    async def join(
        self,
        token: str | TokenSource,
        *,
        meeting_link: str | None = None,
        meeting_id: str | None = None,
        passcode: str | None = None,
        display_name: str,
    ) -> CallHandle:
        self._check_open()
        check_join(meeting_link, meeting_id, passcode, display_name)
        call = _Call(str(uuid.uuid4()), CallState.LOBBY)
        self._calls[call.call_id] = call
        return CallHandle(call.call_id, CallState.LOBBY, call.thread_id)

    def report(
        self,
        call_id: str,
        state: CallState,
        reason: str | None = None,
        *,
        thread_id: str | None = None,
        client_call: str | None = None,
    ) -> Reported:
        """Record what the app says about its call (`judge` decides what counts); `client_call` is the app's own id
        of the call it reports on, when it gives one."""
        self._check_open()
        call = self._calls.get(call_id) or self._take_up(call_id)
        if thread_id is not None:
            call.thread_id = thread_id
        judgement = judge(call.state, call.client_call, call.replaced, state, client_call)
        if judgement.new_call and call.client_call is not None:
            call.replaced.append(call.client_call)
        if client_call is not None and judgement.verdict != ReportVerdict.IGNORED:
            call.client_call = client_call
        if judgement.verdict == ReportVerdict.TAKEN:
            self._set(call, state, reason)
        return Reported(judgement.verdict, call.state)

    async def leave(self, call_id: str, token: str) -> None:
        call = self._calls.get(call_id)
        if call is not None and (call.state is None or not call.state.final):
            self._set(call, CallState.LEFT, None)

    async def get(self, call_id: str, token: str) -> CallHandle:
        call = self._call(call_id)
        if call.state is None:
            raise NotFoundError(f"Call {call_id} has not been reported on since the bridge started.")
        return CallHandle(call.call_id, call.state, call.thread_id)

    async def watch(self, call_id: str, token: str | TokenSource) -> AsyncGenerator[CallEvent, None]:
        if self._closed:
            return
        call = self._calls.get(call_id) or self._take_up(call_id)
        queue: asyncio.Queue[CallEvent | None] = asyncio.Queue()
        # Registered before the first yield, so no change between it and the next wait is missed.
        call.watchers.add(queue)
        try:
            last = call.event() if call.state is not None else None
            if last is not None:
                yield last
            while last is None or not last.state.final:
                event = await queue.get()
                if event is None:
                    return
                if last is None or event.state != last.state:
                    last = event
                    yield event
        finally:
            call.watchers.discard(queue)

    async def start(self) -> None:
        """Nothing to open: calls are reported to it."""

    async def close(self) -> None:
        self._closed = True
        for call in self._calls.values():
            for queue in call.watchers:
                queue.put_nowait(None)

    def _take_up(self, call_id: str) -> _Call:
        # Only the bridge's own sessions name call ids here (a watch, or a report routed by a session), so taking an
        # unknown one up cannot be used to fill this object with calls of someone's choosing.
        call = _Call(call_id, None)
        self._calls[call_id] = call
        log.debug("call %s taken up; its state is unknown until its app reports", call_id)
        return call

    def _set(self, call: _Call, state: CallState, reason: str | None) -> None:
        call.state, call.reason = state, reason
        event = call.event()
        for queue in call.watchers:
            queue.put_nowait(event)
        if state.final:
            self._remember_finished(call.call_id)

    def _remember_finished(self, call_id: str) -> None:
        self._finished[call_id] = None
        while len(self._finished) > self._max_finished:
            old, _ = self._finished.popitem(last=False)
            self._calls.pop(old, None)

    def _call(self, call_id: str) -> _Call:
        call = self._calls.get(call_id)
        if call is None:
            raise NotFoundError(f"Call {call_id} is not known to this connector.")
        return call

    def _check_open(self) -> None:
        if self._closed:
            raise PermanentError("The call connector is closed.")
