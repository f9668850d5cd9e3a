"""The SMS wing's consent: opt-in and opt-out texts recorded in the ledger, opt-outs in words read as STOP or asked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ... import opt_out
from ...config import SmsSection
from ...consent import REQUEST_MAX, ConsentEntry, Event, Method
from ...models import ExternalUser, Meeting
from ...relay.consent import ConsentLedger
from ...store import Store
from .base import InboundSms


@dataclass(frozen=True)
class WordsStop:
    """A free text whose whole meaning is an opt-out: acted on as STOP."""

    phrase: str


@dataclass(frozen=True)
class AskStop:
    """A free text that nearly reads as an opt-out: the number is asked, and the text goes nowhere."""

    phrase: str


def read_opt_out(text: str, mode: Literal["ask", "act", "off"]) -> WordsStop | AskStop | None:
    """What a text that is no keyword means as an opt-out under the configured mode (pure)."""
    if mode == "off":
        return None
    found = opt_out.match(text)
    if found is None:
        return None
    if found.kind == "exact" or mode == "act":
        return WordsStop(found.phrase)
    return AskStop(found.phrase)


class SmsConsent:
    """Writes the ledger for the intake; the intake decides what to send, this remembers that it was sent."""

    def __init__(self, store: Store, ledger: ConsentLedger, settings: SmsSection) -> None:
        self._store = store
        self._ledger = ledger
        self._settings = settings

    async def restore(self, user: ExternalUser) -> ExternalUser:
        """A number seen anew (first contact, or forgotten since): it stays opted out if the ledger says it is."""
        latest = await self._ledger.latest(user.id.removeprefix("sms:"))
        if latest is None or latest.entry.event != "opt_out" or user.opted_out:
            return user
        await self._store.update_user(user.id, opted_out=True)
        return await self._store.get_user(user.id) or user

    async def opted_in(self, user: ExternalUser) -> bool:
        return await self._ledger.opted_in(user.id.removeprefix("sms:"))

    async def record(
        self,
        user: ExternalUser,
        sms: InboundSms,
        event: Event,
        method: Method,
        matched: str,
        *,
        meeting: Meeting | None = None,
        confirmation: str | None = None,
        confirmation_id: str | None = None,
    ) -> None:
        entry = ConsentEntry(
            event=event,
            method=method,
            matched=matched,
            request=sms.text[:REQUEST_MAX],
            gateway=sms.gateway,
            provider_id=sms.provider_id,
            program=self._settings.program,
            meeting_id=meeting.id if meeting is not None else None,
            meeting_name=meeting.name if meeting is not None else None,
            confirmation=confirmation,
            confirmation_id=confirmation_id,
        )
        await self._ledger.record(user.id.removeprefix("sms:"), entry)
