"""The sandbox's in-process event bus: the model publishes ACS events, Event Grid delivery subscribes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .util import JsonDict, new_guid, now

log = logging.getLogger(__name__)

CHAT_MESSAGE_RECEIVED = "Microsoft.Communication.ChatMessageReceivedInThread"
CHAT_MESSAGE_EDITED = "Microsoft.Communication.ChatMessageEditedInThread"
CHAT_MESSAGE_DELETED = "Microsoft.Communication.ChatMessageDeletedInThread"
CHAT_PARTICIPANT_ADDED = "Microsoft.Communication.ChatThreadParticipantAdded"
CHAT_PARTICIPANT_REMOVED = "Microsoft.Communication.ChatThreadParticipantRemoved"
SMS_RECEIVED = "Microsoft.Communication.SMSReceived"
SMS_DELIVERY_REPORT = "Microsoft.Communication.SMSDeliveryReportReceived"


@dataclass(frozen=True)
class SandboxEvent:
    id: str
    type: str
    subject: str
    data: JsonDict
    time: float
    data_version: str = "1.0"


Listener = Callable[[SandboxEvent], None]


class EventBus:
    """Synchronous fan-out: listeners must only enqueue, never block."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def publish(self, event_type: str, subject: str, data: JsonDict) -> SandboxEvent:
        event = SandboxEvent(id=new_guid(), type=event_type, subject=subject, data=data, time=now())
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed for %s", event_type)
        return event
