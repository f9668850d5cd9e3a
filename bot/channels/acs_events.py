"""The Event Grid door for ACS chat events: handshakes answered, the shared secret checked, threads poked."""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web

from ..store import Store
from .eventgrid import VALIDATION_EVENT, EventGridDoor, reject

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
        events = await self.read_events(request)
        if isinstance(events, web.Response):
            return events
        if not all(isinstance(e, dict) for e in events):
            return reject(400, "bad_request", "events must be JSON objects")
        for event in events:
            kind = event.get("eventType") or event.get("type")
            data = event.get("data") if isinstance(event.get("data"), dict) else {}
            if kind == VALIDATION_EVENT:
                return web.json_response({"validationResponse": data.get("validationCode")})
            if kind in CHAT_EVENTS and isinstance(data.get("threadId"), str):
                meeting = await self._store.meeting_by_thread(data["threadId"])
                if meeting is not None:
                    self._readers.poke(meeting.id)
        return web.json_response({"received": len(events)})
