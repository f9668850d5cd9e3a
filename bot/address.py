"""Address (pure): who an external user is on their channel, `sms:+15551234567` or `webhook:<client>/<user>`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .models import ExternalUser
from .phones import mask

Kind = Literal["sms", "webhook"]
SMS: Kind = "sms"
WEBHOOK: Kind = "webhook"


class InvalidAddress(ValueError):
    """Text that is not an address; the message is the reason and never contains the text (it may be a number)."""


@dataclass(frozen=True)
class Address:
    """An external user's id, parsed once. Its string form is the id the store keeps; a phone number shows in full
    only there and in the texts sent to it, never in a log line (`masked`)."""

    kind: Kind
    """The channel family: sms or webhook. Metrics and the outbox's channels are keyed by it."""
    handle: str
    """The phone number in E.164 form, or the user's id at their webhook client."""
    client: str = ""
    """The webhook client's name; empty for SMS."""

    @classmethod
    def sms(cls, number: str) -> Address:
        return cls(SMS, number)

    @classmethod
    def webhook(cls, client: str, user: str) -> Address:
        return cls(WEBHOOK, user, client)

    @classmethod
    def of(cls, user: ExternalUser) -> Address:
        return cls.parse(user.id)

    @classmethod
    def parse(cls, text: str) -> Address:
        kind, colon, rest = text.partition(":")
        if kind == SMS and colon:
            if rest:
                return cls.sms(rest)
            raise InvalidAddress("an SMS address is sms:<number>")
        if kind == WEBHOOK and colon:
            client, slash, user = rest.partition("/")
            if client and slash and user:
                return cls.webhook(client, user)
            raise InvalidAddress("a webhook address is webhook:<client>/<user>")
        raise InvalidAddress("an address starts with sms: or webhook:")

    def __str__(self) -> str:
        return f"{SMS}:{self.handle}" if self.kind == SMS else f"{WEBHOOK}:{self.client}/{self.handle}"

    @property
    def channel(self) -> str:
        """The user's channel as the store keeps it: sms, or webhook:<client>."""
        return SMS if self.kind == SMS else f"{WEBHOOK}:{self.client}"

    @property
    def label(self) -> str:
        """The channel as a display name shows it: SMS, or the webhook client's name."""
        return "SMS" if self.kind == SMS else self.client

    @property
    def masked(self) -> str:
        """Fit for a log line: a phone number masked (sms:+1555***4567); a webhook address as it is."""
        return f"{SMS}:{mask(self.handle)}" if self.kind == SMS else str(self)


def masked(user_id: str) -> str:
    """A stored user id fit for a log line; one that is not an address is shown only as such."""
    try:
        return Address.parse(user_id).masked
    except InvalidAddress:
        return "an unknown address"
