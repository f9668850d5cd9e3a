"""The Channel protocol the relay delivers through; the relay never imports a channel module."""

from __future__ import annotations

from typing import Protocol

from ..models import Delivery, ExternalUser, Meeting


class Channel(Protocol):
    name: str

    async def deliver(self, user: ExternalUser, meeting: Meeting, delivery: Delivery) -> None:
        """Hand one outbound delivery to the user; raise TransientError to retry, PermanentError to give up."""
        ...
