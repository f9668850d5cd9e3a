"""ClientReportedConnector: for apps that join the Teams call themselves and report its state to the bridge."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from ..errors import NotFoundError, PermanentError
from ..models import CallEvent, CallHandle, CallState
from .base import TokenSource, check_join

log = logging.getLogger(__name__)

# Finished calls are remembered so late reports, gets and leaves still find them; beyond this, the oldest go.
MAX_FINISHED_CALLS = 1000


@dataclass
class _Call:
    call_id: str
    state: CallState
    thread_id: str | None = None
    reason: str | None = None
    # One queue per open watch; None tells a watch the connector closed.
    watchers: set[asyncio.Queue[CallEvent | None]] = field(default_factory=set)

    def event(self) -> CallEvent:
        return CallEvent(self.call_id, self.state, self.reason)


class ClientReportedConnector:
    """A CallConnector whose call legs are held by the user's own app (for example one running the Calling SDK).

    ``join`` only registers a call in LOBBY and hands out its id; the app joins the meeting itself and reports
    every state change through ``report``, which is what ``watch`` yields. Tokens are not checked here: the app
    that holds the call authenticates to the bridge by its own means before its reports reach this object.
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
        return CallHandle(call.call_id, call.state, call.thread_id)

    def report(
        self, call_id: str, state: CallState, reason: str | None = None, *, thread_id: str | None = None
    ) -> bool:
        """Record what the app says about its call; True if the state changed.

        A finished call stays finished: later reports are ignored (an app may report "ended" after "removed").
        """
        self._check_open()
        call = self._call(call_id)
        if thread_id is not None:
            call.thread_id = thread_id
        if call.state.final or state == call.state:
            return False
        self._set(call, state, reason)
        return True

    async def leave(self, call_id: str, token: str) -> None:
        call = self._calls.get(call_id)
        if call is not None and not call.state.final:
            self._set(call, CallState.LEFT, None)

    async def get(self, call_id: str, token: str) -> CallHandle:
        call = self._call(call_id)
        return CallHandle(call.call_id, call.state, call.thread_id)

    async def watch(self, call_id: str, token: str | TokenSource) -> AsyncGenerator[CallEvent, None]:
        call = self._call(call_id)
        if self._closed:
            return
        queue: asyncio.Queue[CallEvent | None] = asyncio.Queue()
        # Registered before the first yield, so no change between it and the next wait is missed.
        call.watchers.add(queue)
        try:
            last = call.event()
            yield last
            while not last.state.final:
                event = await queue.get()
                if event is None:
                    return
                if event.state != last.state:
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
