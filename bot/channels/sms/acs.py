"""The Event Grid door for ACS SMS: handshakes, the shared secret, SMSReceived and SMSDeliveryReportReceived."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ...errors import PermanentError, TransientError
from ...phones import mask
from ...refusal import refuse
from ..bodies import id_refusal
from ..eventgrid import VALIDATION_EVENT, EventGridDoor, is_text
from .base import InboundSms, SmsReceiver

log = logging.getLogger(__name__)
PATH = "/channels/acs-sms/events"
SEEN_EVENT_IDS = 1024
SMS_RECEIVED = "Microsoft.Communication.SMSReceived"
SMS_DELIVERY_REPORT = "Microsoft.Communication.SMSDeliveryReportReceived"


class Malformed(ValueError):
    """One event the door cannot read; the message is the reason, never the event's content."""


@dataclass(frozen=True)
class Report:
    message_id: str
    delivered: bool
    detail: str | None


@dataclass(frozen=True)
class Parsed:
    """One event that matters to the door."""

    id: str
    kind: str
    sms: InboundSms | None = None
    report: Report | None = None
    validation_code: str | None = None


def _strings(data: dict[str, Any], *names: str) -> list[str]:
    missing = [n for n in names if not isinstance(data.get(n), str)]
    if missing:
        raise Malformed(f"data.{', data.'.join(missing)} must be strings")
    broken = [n for n in names if not is_text(data[n])]
    if broken:
        raise Malformed(f"data.{', data.'.join(broken)} must be valid Unicode (no lone surrogate escapes)")
    return [str(data[n]) for n in names]


def parse_event(event: object) -> Parsed | None:
    """An Event Grid or CloudEvents event as the door needs it; None for types it ignores."""
    if not isinstance(event, dict):
        raise Malformed("an event must be a JSON object")
    # Event Grid's schema names the type eventType, CloudEvents type; both carry id and data.
    kind = event.get("eventType", event.get("type"))
    event_id = event.get("id")
    if not isinstance(kind, str) or not kind:
        raise Malformed("the event has no eventType or type")
    if kind not in (VALIDATION_EVENT, SMS_RECEIVED, SMS_DELIVERY_REPORT):
        return None
    if not isinstance(event_id, str) or not event_id or not is_text(event_id):
        raise Malformed(f"the {kind} event has no id")
    if (too_long := id_refusal("id", event_id)) is not None:
        raise Malformed(f"the {kind} event's {too_long}")
    data = event.get("data")
    if not isinstance(data, dict):
        raise Malformed(f"the {kind} event's data must be an object")
    if kind == VALIDATION_EVENT:
        [code] = _strings(data, "validationCode")
        return Parsed(event_id, kind, validation_code=code)
    if kind == SMS_RECEIVED:
        message_id, sender, to, text = _strings(data, "messageId", "from", "to", "message")
        if (too_long := id_refusal("data.messageId", message_id)) is not None:
            raise Malformed(too_long)  # kept to drop repeats, like a webhook-id
        return Parsed(event_id, kind, sms=InboundSms("acs", message_id, sender, to, text))
    message_id, status = _strings(data, "messageId", "deliveryStatus")
    details = data.get("deliveryStatusDetails")
    detail = details if isinstance(details, str) and details and is_text(details) else status
    return Parsed(event_id, kind, report=Report(message_id, status == "Delivered", detail))


class AcsSmsDoor(EventGridDoor):
    """Event Grid bodies are not signed: the secret in the subscription's URL (?code=) authenticates them.

    A batch is answered 200 only after every readable event was handed to the receiver, which stores it first.
    A malformed event inside a batch that also holds readable ones is logged and skipped, not refused: Event Grid
    retries or drops the whole batch on a non-2xx, so refusing would redeliver (or lose) the good events over one
    bad one that no retry can mend. A body in which nothing is readable is answered 400, which Event Grid drops.
    """

    path = PATH

    def __init__(self, secret: str, receiver: SmsReceiver) -> None:
        super().__init__(secret)
        self._receiver = receiver
        # Event Grid delivers at least once; the receiver's inbox drops repeats for good, this only saves work.
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def handle(self, request: web.Request) -> web.Response:
        """POST /channels/acs-sms/events?code=<secret>: an Event Grid array, one CloudEvent or a CloudEvents batch."""
        raw_events = await self.read_events(request)
        if isinstance(raw_events, web.Response):
            return raw_events
        events: list[Parsed] = []
        reasons: list[str] = []
        for index, raw in enumerate(raw_events):
            try:
                event = parse_event(raw)
            except Malformed as exc:
                reasons.append(str(exc))
                event_id = raw.get("id") if isinstance(raw, dict) else None
                shown = event_id[:80] if isinstance(event_id, str) else None
                log.warning("ACS SMS event %d (id %s) skipped: %s", index, shown, exc)
                continue
            if event is not None:
                events.append(event)
        if reasons and len(reasons) == len(raw_events):
            return refuse(400, "bad_request", reasons[0])
        for event in events:
            if event.validation_code is not None:
                log.info("answered an Event Grid subscription validation for ACS SMS events")
                return web.json_response({"validationResponse": event.validation_code})
        handled = 0
        for event in events:
            if event.id in self._seen:
                self._seen.move_to_end(event.id)
                continue
            try:
                await self._hand_over(event)
            except TransientError as exc:
                # Event Grid retries the whole batch; what was already handed over is dropped as a repeat.
                log.warning("ACS SMS event %s not stored yet: %s", event.id, exc)
                wait = int(exc.retry_after) if exc.retry_after else None
                return refuse(503, "unavailable", "the bridge cannot store events right now", retry_after=wait)
            except PermanentError as exc:
                log.warning("ACS SMS event %s refused by the relay: %s", event.id, exc)
            self._remember(event.id)
            handled += 1
        return web.json_response({"received": len(raw_events), "handled": handled, "skipped": len(reasons)})

    async def _hand_over(self, event: Parsed) -> None:
        if event.sms is not None:
            sms = event.sms
            log.info("SMS %s received from %s", sms.provider_id, mask(sms.from_number))
            await self._receiver.receive(sms)
        elif event.report is not None:
            report = event.report
            log.info("SMS %s delivery report: %s", report.message_id, "delivered" if report.delivered else "failed")
            await self._receiver.delivery_report(report.message_id, delivered=report.delivered, detail=report.detail)

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        while len(self._seen) > SEEN_EVENT_IDS:
            self._seen.popitem(last=False)
