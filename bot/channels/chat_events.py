"""The Event Grid door for ACS chat events: handshakes answered, the shared secret checked, threads poked."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from ..refusal import refuse
from ..store import Store
from .eventgrid import VALIDATION_EVENT, EventGridDoor, is_text

log = logging.getLogger(__name__)
PATH = "/channels/acs/events"
CHAT_EVENTS = (
    "Microsoft.Communication.ChatMessageReceivedInThread",
    "Microsoft.Communication.ChatMessageEditedInThread",
    "Microsoft.Communication.ChatMessageDeletedInThread",
)


class ThreadPoke(Protocol):
    def poke(self, meeting_id: str, announced: Sequence[tuple[str, str]] = ()) -> None:
        """Read the meeting's thread now; `announced`: the (message id, version) pairs the events named."""
        ...


class Malformed(ValueError):
    """A body with no readable event in it; the message is the first reason."""


@dataclass(frozen=True)
class ChatEvents:
    """What a delivery asks of the door: answer a handshake, or read these threads now."""

    validation_code: str | None
    threads: list[str]
    """Each thread once, in the order first named."""
    announced: dict[str, list[tuple[str, str]]]
    """Per thread, the (message id, version) pairs its events named, repeats and all."""
    skipped: int
    """Events that could not be read."""


def read_chat_events(events: list[Any]) -> ChatEvents:
    """The handshake code or the threads the events name; events of other types are ignored. Malformed when an
    event is not an object, or when not one event could be read."""
    if not all(isinstance(e, dict) for e in events):
        raise Malformed("events must be JSON objects")
    threads: dict[str, list[tuple[str, str]]] = {}
    reasons: list[str] = []
    for event in events:
        kind = event.get("eventType") or event.get("type")
        data = event.get("data")
        if not isinstance(kind, str):
            reasons.append("the event has no eventType or type")
        elif kind == VALIDATION_EVENT:
            code = data.get("validationCode") if isinstance(data, dict) else None
            if isinstance(code, str) and code and is_text(code):
                return ChatEvents(code, [], {}, 0)
            reasons.append("the validation event's data.validationCode must be a string")
        elif kind in CHAT_EVENTS:
            thread = data.get("threadId") if isinstance(data, dict) else None
            if isinstance(data, dict) and isinstance(thread, str) and thread and is_text(thread):
                keys = threads.setdefault(thread, [])
                key = _message_key(data)
                if key is not None:
                    keys.append(key)
            else:
                reasons.append(f"the {kind} event's data.threadId must be a string")
    if reasons and len(reasons) == len(events):
        raise Malformed(reasons[0])
    return ChatEvents(None, list(threads), threads, len(reasons))


def _message_key(data: dict[str, Any]) -> tuple[str, str] | None:
    """The message id and version an event names (ACS sends the version as a number); None without both."""
    message_id, version = data.get("messageId"), data.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if (
        isinstance(message_id, str)
        and isinstance(version, str)
        and message_id
        and version
        and is_text(message_id + version)
    ):
        return message_id, version
    return None


class ChatEventsDoor(EventGridDoor):
    path = PATH

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
        try:
            read = read_chat_events(events)
        except Malformed as exc:
            return refuse(400, "bad_request", str(exc))
        if read.validation_code is not None:
            return web.json_response({"validationResponse": read.validation_code})
        for thread in read.threads:
            meeting = await self._store.meeting_by_thread(thread)
            if meeting is not None:
                self._readers.poke(meeting.id, read.announced[thread])
        return web.json_response({"received": len(events), "skipped": read.skipped})
