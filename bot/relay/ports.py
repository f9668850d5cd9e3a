"""The Channel protocol the relay delivers through; the relay never imports a channel module."""

from __future__ import annotations

from typing import Protocol

from ..models import Delivery, ExternalUser, Meeting


class Channel(Protocol):
    name: str
    batch_window_s: float
    """0: one delivery at a time; more: deliveries arriving within this window are handed over together."""

    async def turn(self, user: ExternalUser, meeting: Meeting | None, deliveries: list[Delivery]) -> None:
        """Wait until the provider may take the next try (its send limit, a Retry-After it asked for). Awaited
        before the try is counted, so a crash while waiting costs the deliveries none of their attempts."""
        ...

    async def deliver(self, user: ExternalUser, meeting: Meeting | None, deliveries: list[Delivery]) -> str | None:
        """Hand deliveries (in order, one meeting) to the user; the provider's id for them, if it gives one.
        Raise TransientError to retry them, PermanentError to give up on them. `meeting` is None for replies
        that belong to no meeting."""
        ...
