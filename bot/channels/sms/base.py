"""What the SMS gateways (ACS SMS, Twilio-style) and the SMS relay share: inbound texts, reports, sending."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class InboundSms:
    gateway: str
    """acs or twilio: with provider_id it names one inbound text, so repeats are dropped."""
    provider_id: str
    from_number: str
    to_number: str
    text: str


class SmsReceiver(Protocol):
    """The relay side of an SMS gateway's door."""

    async def receive(self, sms: InboundSms) -> None:
        """Store (and act on) one inbound text; returns once it is durable, so the door may acknowledge it.
        A repeat of a text already received does nothing."""

    async def delivery_report(self, provider_message_id: str, delivered: bool, detail: str | None) -> None:
        """Record the carrier's final word on one sent text."""


class SmsGateway(Protocol):
    """Sends one text. `key` is stable across our retries of the same text, so the provider can drop repeats
    (ACS: repeatabilityRequestId; Twilio: an idempotency header), and `first_sent` is when we first tried."""

    name: str
    number: str

    async def send(self, to: str, text: str, *, key: str, first_sent: datetime) -> str:
        """The provider's message id; TransientError to retry, PermanentError (e.g. opted out) to give up."""
        ...

    async def close(self) -> None: ...
