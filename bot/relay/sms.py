"""SMS intake: a text from a phone becomes a keyword command or chat in the sender's meeting, stored first."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import uuid
from typing import Any

from .. import commands
from ..channels.sms_base import InboundSms
from ..config import SmsSection
from ..formatting import clean_name
from ..models import Direction, ExternalUser, Meeting
from ..phones import InvalidNumber, mask, matches, normalize
from ..sessions import ACTIVE
from ..store import NewDelivery, Store
from .runtime import Relay

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

    async def _done(self, channel: str, sms: InboundSms, what: str) -> None:
        await self._store.record_inbound(channel, sms.provider_id, 200, {"handled": what}, None)

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
        channel = f"sms:{sms.gateway}"
        if await self._store.inbox_answer(channel, sms.provider_id) is not None:
            return  # a repeat of a text already handled
        try:
            number = normalize(sms.from_number, strict=False)
        except InvalidNumber as exc:
            log.info("text from an invalid number %s dropped: %s", mask(sms.from_number), exc)
            await self._done(channel, sms, "invalid number")
            return
        user_id = f"sms:{number}"
        existing = await self._store.get_user(user_id)
        user = existing or await self._store.upsert_user(user_id, "sms", f"Guest {number[-4:]}")
        command = commands.parse(sms.text, opted_out=user.opted_out)
        if isinstance(command, commands.Stop):
            await self._stop(user)
            return await self._done(channel, sms, "stop")
        if isinstance(command, commands.Start):
            await self._store.update_user(user.id, opted_out=False)
            await self._reply(user, self._text("start"))
            return await self._done(channel, sms, "start")
        if user.opted_out:
            # Nothing is sent to an opted-out number; what it texts (other than START) is dropped.
            return await self._done(channel, sms, "opted out")
        if matches(number, self._settings.deny) or not matches(number, self._settings.allow) or user.blocked:
            log.info("text from %s refused by the allow or deny list", mask(number))
            if self._settings.unknown_policy == "reply":
                await self._reply(user, self._text("not_allowed"))
            return await self._done(channel, sms, "not allowed")
        if isinstance(command, commands.Help):
            await self._reply(user, self._text("help"))
        elif isinstance(command, commands.Join):
            await self._join(channel, sms, user, command.code)
            return
        elif isinstance(command, commands.Leave):
            session = await self._active(user)
            if session is None:
                await self._reply(user, self._text("no_session"))
            else:
                await self._relay.presence.leave(session)
        elif isinstance(command, commands.Name):
            await self._name(user, command.name)
        elif isinstance(command, commands.Status):
            await self._status(user)
        else:
            assert isinstance(command, commands.Chat)
            await self._chat(channel, sms, user, command.text)
            return
        await self._done(channel, sms, type(command).__name__.lower())

    async def _active(self, user: ExternalUser) -> Any:
        sessions = [s for s in await self._store.sessions(states=ACTIVE) if s.user_id == user.id]
        return sessions[-1] if sessions else None

    async def _stop(self, user: ExternalUser) -> None:
        session = await self._active(user)
        if session is not None:
            await self._relay.presence.leave(session, "stopped")
        # The one confirmation goes out even though the number is now opted out; nothing else will.
        await self._reply(user, self._text("stop"), always=True)
        await self._store.update_user(user.id, opted_out=True)
        log.info("%s opted out", mask(user.id.removeprefix("sms:")))

    async def _join(self, channel: str, sms: InboundSms, user: ExternalUser, code: str | None) -> None:
        if code is None:
            invited = [m for m in await self._store.list_meetings() if invited_to(m, user.id)]
            if len(invited) != 1:
                await self._reply(user, self._text("join_usage"))
                return await self._done(channel, sms, "join usage")
            code = invited[0].code
        meeting = await self._relay.intake.find_meeting(code)
        current = await self._active(user)
        if meeting is not None and current is not None and current.meeting_id != meeting.id:
            # One meeting at a time on a phone: joining another leaves the first, once the other lets them in.
            if await self._relay.intake.refusal(user.id, code) is None:
                await self._relay.presence.leave(current)
        answer = await self._relay.intake.join(channel, sms.provider_id, user, code)
        if answer.status == 404:
            await self._reply(user, self._text("unknown_meeting", code=code))
        elif answer.status == 403:
            await self._reply(user, self._text("not_allowed"))
        elif meeting is not None and current is not None and current.meeting_id == meeting.id:
            # Already there, or on the way: no session change will announce anything, so say where they are.
            await self._status(user)
        if answer.status >= 300:
            await self._done(channel, sms, "join refused")

    async def _name(self, user: ExternalUser, name: str) -> None:
        problem = commands.validate_name(name, self._settings.name_max_chars)
        if problem is not None:
            await self._reply(user, self._text("name_invalid", reason=problem))
            return
        shown = clean_name(name)  # what validate_name checked
        await self._store.update_user(user.id, display_name=shown)
        await self._reply(user, self._text("name_set", name=shown))

    async def _status(self, user: ExternalUser) -> None:
        session = await self._active(user)
        if session is None:
            await self._reply(user, self._text("status_none"))
            return
        meeting = await self._store.get_meeting(session.meeting_id)
        label = meeting.name if meeting is not None else "the meeting"
        state = commands.describe_state(session.state.value)
        await self._reply(user, self._text("status", meeting=label, state=state), session.meeting_id)

    async def _chat(self, channel: str, sms: InboundSms, user: ExternalUser, text: str) -> None:
        session = await self._active(user)
        if session is None:
            await self._reply(user, self._text("no_session"))
            return await self._done(channel, sms, "no session")
        meeting = await self._store.get_meeting(session.meeting_id)
        assert meeting is not None
        answer = await self._relay.intake.message(channel, sms.provider_id, user, meeting.code, text)
        if answer.status == 429:
            # The gateway already took the text, so it cannot be refused like a webhook: it is marked seen (a
            # redelivery stays dropped), not queued, and the phone is told, once until a text of theirs gets in.
            busy = NewDelivery(
                str(uuid.uuid4()),
                Direction.OUTBOUND,
                meeting.id,
                user.id,
                "notice",
                {"text": BUSY_TEXT, "state": "busy"},
                session_id=session.id,
            )
            if await self._store.add_notice_once(busy):
                log.info("%s told the meeting is busy", mask(user.id.removeprefix("sms:")))
                self._relay.notify(user.id)
            await self._done(channel, sms, "busy")
        elif answer.status >= 300:
            await self._reply(user, self._text("no_session"), meeting.id)
            await self._done(channel, sms, "not in call")
