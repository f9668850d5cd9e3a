"""The Event Grid door for ACS chat events: handshakes answered, the shared secret checked, threads poked."""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web

from ..store import Store
from .eventgrid import VALIDATION_EVENT, EventGridDoor, is_text, reject

log = logging.getLogger(__name__)
CHAT_EVENTS = (
    "Microsoft.Communication.ChatMessageReceivedInThread",
    "Microsoft.Communication.ChatMessageEditedInThread",
    "Microsoft.Communication.ChatMessageDeletedInThread",
)


class ThreadPoke(Protocol):
    def poke(self, meeting_id: str) -> None: ...


class AcsEventsDoor(EventGridDoor):
    def __init__(self, secret: str, store: Store, readers: ThreadPoke) -> None:
        super().__init__(secret)
        self._store = store
        self._readers = readers

    async def handle(self, request: web.Request) -> web.Response:
        """POST /channels/acs/events?code=<secret>: each chat event names a thread to read now. As at the SMS door,
        an unreadable event beside readable ones is skipped; a body in which nothing is readable is answered 400."""
        events = await self.read_events(request)
        if isinstance(events, web.Response):
            return events
        if not all(isinstance(e, dict) for e in events):
            return reject(400, "bad_request", "events must be JSON objects")
        threads: list[str] = []
        reasons: list[str] = []
        for event in events:
            kind = event.get("eventType") or event.get("type")
            data = event.get("data")
            if not isinstance(kind, str):
                reasons.append("the event has no eventType or type")
            elif kind == VALIDATION_EVENT:
                code = data.get("validationCode") if isinstance(data, dict) else None
                if isinstance(code, str) and code and is_text(code):
                    return web.json_response({"validationResponse": code})
                reasons.append("the validation event's data.validationCode must be a string")
            elif kind in CHAT_EVENTS:
                thread = data.get("threadId") if isinstance(data, dict) else None
                if isinstance(thread, str) and thread and is_text(thread):
                    threads.append(thread)
                else:
                    reasons.append(f"the {kind} event's data.threadId must be a string")
        if reasons and len(reasons) == len(events):
            return reject(400, "bad_request", reasons[0])
        for thread in dict.fromkeys(threads):  # a burst of events on one thread is one poke
            meeting = await self._store.meeting_by_thread(thread)
            if meeting is not None:
                self._readers.poke(meeting.id)
        return web.json_response({"received": len(events), "skipped": len(reasons)})
