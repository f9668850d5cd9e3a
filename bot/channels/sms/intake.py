"""SMS intake: a text from a phone becomes a keyword command or chat in the sender's meeting, stored first."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import uuid
from typing import Any

from ... import commands
from ...address import Address
from ...config import SmsSection
from ...formatting import clean_name
from ...models import Direction, ExternalUser, Meeting, Session
from ...phones import InvalidNumber, mask, matches, normalize
from ...relay.intake import Join, Message, Sender, Ticket
from ...relay.outcomes import Accepted
from ...relay.runtime import Relay
from ...store import NewDelivery, Store
from .base import InboundSms
from .replies import chat_reply, join_reply

log = logging.getLogger(__name__)
# A report can overtake the send's own answer (the provider reports as it accepts the text, before the dispatcher
# has stored the message id): it is tried again after these pauses before being given up as a stranger's.
LATE_REPORT_PAUSES_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
LATE_REPORTS_MAX = 1000
BUSY_TEXT = "The meeting is busy and your message was not sent. Please try again in a minute."


def invited_to(meeting: Meeting, user_id: str) -> bool:
    """Named in the meeting's allow-list by number or prefix, not merely let in by a wildcard."""
    return any(fnmatch.fnmatchcase(user_id, pattern) for pattern in meeting.allow if pattern not in ("*", "sms:*"))


class SmsIntake:
    """Implements SmsReceiver for both gateways; the provider's message id makes every inbound text count once."""

    def __init__(self, store: Store, relay: Relay, settings: SmsSection) -> None:
        self._store = store
        self._relay = relay
        self._settings = settings
        self._late_reports = 0

    def _text(self, key: str, **values: Any) -> str:
        return commands.reply(key, self._settings.texts, **values)

    async def _reply(self, user: ExternalUser, text: str, meeting_id: str = "", *, always: bool = False) -> None:
        body: dict[str, Any] = {"text": text}
        if always:
            body["always"] = True
        await self._store.add_deliveries(
            [NewDelivery(str(uuid.uuid4()), Direction.OUTBOUND, meeting_id, user.id, "notice", body)]
        )
        self._relay.notify(user.id)

    async def _done(self, ticket: Ticket, what: str) -> None:
        """Note a text the intake did not keep, so that a redelivery of it is dropped too."""
        await self._store.record_inbound(ticket.channel, ticket.provider_id, 200, {"handled": what}, None)

    async def delivery_report(self, provider_message_id: str, delivered: bool, detail: str | None) -> None:
        report = "delivered" if delivered else f"failed: {detail or 'no reason given'}"
        if await self._store.record_report(provider_message_id, report):
            return
        if self._late_reports >= LATE_REPORTS_MAX:
            log.debug("delivery report for an unknown text %s", provider_message_id)
            return
        self._late_reports += 1
        try:
            self._relay.tasks.spawn(self._late_report(provider_message_id, report), name="sms late report")
        except RuntimeError:  # shutting down: the report is informational, the text itself was sent
            self._late_reports -= 1

    async def _late_report(self, provider_message_id: str, report: str) -> None:
        try:
            for pause in LATE_REPORT_PAUSES_S:
                await asyncio.sleep(pause)
                if await self._store.record_report(provider_message_id, report):
                    return
            # Later parts of a split text and budget notices have ids no outbox row carries.
            log.debug("delivery report for an unknown text %s", provider_message_id)
        finally:
            self._late_reports -= 1

    async def receive(self, sms: InboundSms) -> None:
        ticket = await self._relay.intake.open(f"sms:{sms.gateway}", sms.provider_id)
        if not isinstance(ticket, Ticket):
            return  # a repeat of a text already handled
        try:
            number = normalize(sms.from_number, strict=False)
        except InvalidNumber as exc:
            log.info("text from an invalid number %s dropped: %s", mask(sms.from_number), exc)
            return await self._done(ticket, "invalid number")
        address = Address.sms(number)
        existing = await self._store.get_user(str(address))
        user = existing or await self._store.upsert_user(str(address), address.channel, f"Guest {number[-4:]}")
        command = commands.parse(sms.text, opted_out=user.opted_out)
        note = await self._screen(user, command)
        if note is None:
            note = await self._command(ticket, user, command)
        if note is not None:
            await self._done(ticket, note)

    async def _screen(self, user: ExternalUser, command: commands.Command) -> str | None:
        """STOP, START, and any text from an opted-out or refused number end here: what the inbox notes of them.
        None for a command to carry out."""
        if isinstance(command, commands.Stop):
            await self._stop(user)
            return "stop"
        if isinstance(command, commands.Start):
            await self._store.update_user(user.id, opted_out=False)
            await self._reply(user, self._text("start"))
            return "start"
        if user.opted_out:
            # Nothing is sent to an opted-out number; what it texts (other than START) is dropped.
            return "opted out"
        number = Address.of(user).handle
        if matches(number, self._settings.deny) or not matches(number, self._settings.allow) or user.blocked:
            log.info("text from %s refused by the allow or deny list", Address.of(user).masked)
            if self._settings.unknown_policy == "reply":
                await self._reply(user, self._text("not_allowed"))
            return "not allowed"
        return None

    async def _command(self, ticket: Ticket, user: ExternalUser, command: commands.Command) -> str | None:
        """Carry out a command; what the inbox notes of it, or None when the intake kept the text's outcome."""
        if isinstance(command, commands.Join):
            return await self._join(ticket, user, command.code)
        if isinstance(command, commands.Chat):
            return await self._chat(ticket, user, command.text)
        if isinstance(command, commands.Help):
            await self._reply(user, self._text("help"))
        elif isinstance(command, commands.Leave):
            session = await self._store.current_session(user.id)
            if session is None:
                await self._reply(user, self._text("no_session"))
            else:
                await self._relay.presence.leave(session)
        elif isinstance(command, commands.Name):
            await self._name(user, command.name)
        elif isinstance(command, commands.Status):
            session = await self._store.current_session(user.id)
            await self._status(user, session.meeting_id if session else None, session.state.value if session else "")
        return type(command).__name__.lower()

    async def _stop(self, user: ExternalUser) -> None:
        session = await self._store.current_session(user.id)
        if session is not None:
            await self._relay.presence.leave(session, "stopped")
        # The one confirmation goes out even though the number is now opted out; nothing else will.
        await self._reply(user, self._text("stop"), always=True)
        await self._store.update_user(user.id, opted_out=True)
        log.info("%s opted out", Address.of(user).masked)

    async def _join(self, ticket: Ticket, user: ExternalUser, code: str | None) -> str | None:
        if code is None:
            invited = [m for m in await self._store.list_meetings() if invited_to(m, user.id)]
            if len(invited) != 1:
                await self._reply(user, self._text("join_usage"))
                return "join usage"
            code = invited[0].code
        # One meeting at a time on a phone: joining another leaves the first, once the other lets them in.
        current = await self._store.current_session(user.id)
        outcome = await self._relay.intake.submit(ticket, Sender(Address.of(user), user=user), Join(code, current))
        reply = join_reply(outcome, current)
        if reply.text == "status" and isinstance(outcome, Accepted) and current is not None:
            await self._status(user, current.meeting_id, outcome.status)
        elif reply.text == "unknown_meeting":
            await self._reply(user, self._text(reply.text, code=code))
        elif reply.text is not None:
            await self._reply(user, self._text(reply.text))
        return reply.note

    async def _name(self, user: ExternalUser, name: str) -> None:
        problem = commands.validate_name(name, self._settings.name_max_chars)
        if problem is not None:
            await self._reply(user, self._text("name_invalid", reason=problem))
            return
        shown = clean_name(name)  # what validate_name checked
        await self._store.update_user(user.id, display_name=shown)
        await self._reply(user, self._text("name_set", name=shown))

    async def _status(self, user: ExternalUser, meeting_id: str | None, state: str) -> None:
        if meeting_id is None:
            await self._reply(user, self._text("status_none"))
            return
        meeting = await self._store.get_meeting(meeting_id)
        label = meeting.name if meeting is not None else "the meeting"
        await self._reply(user, self._text("status", meeting=label, state=commands.describe_state(state)), meeting_id)

    async def _chat(self, ticket: Ticket, user: ExternalUser, text: str) -> str | None:
        session = await self._store.current_session(user.id)
        if session is None:
            await self._reply(user, self._text("no_session"))
            return "no session"
        outcome = await self._relay.intake.submit(ticket, Sender(Address.of(user), user=user), Message(session, text))
        reply = chat_reply(outcome)
        if reply.busy:
            await self._tell_busy(user, session)
        elif reply.text is not None:
            await self._reply(user, self._text(reply.text), session.meeting_id)
        return reply.note

    async def _tell_busy(self, user: ExternalUser, session: Session) -> None:
        """Once until a text of theirs gets in: the notice stands for the whole busy spell."""
        busy = NewDelivery(
            str(uuid.uuid4()),
            Direction.OUTBOUND,
            session.meeting_id,
            user.id,
            "notice",
            {"text": BUSY_TEXT, "state": "busy"},
            session_id=session.id,
        )
        if await self._store.add_notice_once(busy):
            log.info("%s told the meeting is busy", Address.of(user).masked)
            self._relay.notify(user.id)
