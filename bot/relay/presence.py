"""Sessions that follow the call: one call leg per (meeting, identity), joined, watched, re-joined, left."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Protocol

from .. import sessions as machine
from ..address import Address
from ..backoff import Backoff
from ..config import RelaySection
from ..errors import NotFoundError, PermanentError, StaleTokenError, TransientError
from ..formatting import display_name
from ..models import (
    CallEvent,
    CallHandle,
    CallState,
    DeliveryState,
    Direction,
    ExternalUser,
    IdentityMode,
    Meeting,
    Reported,
    ReportVerdict,
    Session,
)
from ..models import SessionState as S
from ..store import NewDelivery, Store, utcnow
from ..store.outage import outlasting
from ..tasks import TaskSet
from .identities import IdentityBroker
from .ports import CallConnector, CallReports, TokenSource

log = logging.getLogger(__name__)
SHARED_SPEAKER = "External guests"
MAX_REJOINS = 5
REJOIN = Backoff(base_s=1.0, cap_s=30.0)
"""Waits between re-joins of a leg: 1 s after the first failure, doubling, at most 30 s."""
HEALTHY_AFTER_S = 60.0
"""A leg connected this long has recovered: its earlier drops no longer count toward MAX_REJOINS."""


class PresenceEvents(Protocol):
    def in_call(self, meeting_id: str) -> None:
        """A leg of this meeting connected: start its reader and release held messages."""

    def notify(self, user_id: str) -> None:
        """Something was queued for this user."""

    async def chat_refused(self, meeting_id: str, reason: str) -> None:
        """A connected leg of this meeting was refused its chat (403): not a matter of the call."""


@dataclass
class _Leg:
    meeting_id: str
    identity: str
    task: asyncio.Task[None] | None = None
    leaving: bool = False
    call_id: str | None = None
    state: CallState | None = None
    """The call state last applied to the leg's sessions; a session that joins a live leg starts from it."""


def channel_label(user: ExternalUser) -> str:
    return Address.of(user).label


def speaker_name(meeting: Meeting, user: ExternalUser | None) -> str:
    """The name Teams shows for the identity speaking for this user in this meeting."""
    if meeting.identity_mode == IdentityMode.SHARED or user is None:
        return SHARED_SPEAKER
    return display_name(meeting.display_name_template, name=user.display_name, channel=channel_label(user))


def notice(session: Session, text: str, state: str) -> NewDelivery:
    return NewDelivery(
        id=str(uuid.uuid4()),
        direction=Direction.OUTBOUND,
        meeting_id=session.meeting_id,
        user_id=session.user_id,
        kind="notice",
        body={"text": text, "state": state},
        session_id=session.id,
    )


class Presence:
    def __init__(
        self,
        store: Store,
        broker: IdentityBroker,
        connector: CallConnector,
        events: PresenceEvents,
        settings: RelaySection,
        tasks: TaskSet,
        reports: CallReports | None = None,
    ) -> None:
        self._store = store
        self._broker = broker
        self._connector = connector
        self._reports = reports
        """The connector again when the users' apps hold the legs and report on them; None when the bridge does."""
        self._events = events
        self._settings = settings
        self._tasks = tasks
        self._legs: dict[tuple[str, str], _Leg] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    @property
    def connector(self) -> CallConnector:
        return self._connector

    @property
    def takes_reports(self) -> bool:
        return self._reports is not None

    async def identity_for(self, user: ExternalUser, meeting: Meeting) -> str:
        if meeting.identity_mode == IdentityMode.SHARED:
            return await self._broker.for_meeting(meeting)
        return await self._broker.for_user(user)

    async def join(self, user: ExternalUser, meeting: Meeting) -> Session:
        """The user's active session in the meeting, created and set joining if there is none."""
        existing = await self._store.active_session(user.id, meeting.id)
        if existing is not None:
            return existing
        identity = await self.identity_for(user, meeting)
        session = await self._store.create_session(user.id, meeting.id, identity)
        log.info("session %d requested (meeting %s, %s user)", session.id, meeting.id, user.channel)
        key = (meeting.id, identity)
        leg = self._legs.get(key)
        live = leg is not None and leg.task is not None and not leg.task.done() and not leg.leaving
        self._ensure_leg(meeting.id, identity)
        if live and leg is not None and leg.state is not None and not leg.state.final:
            # A relay-mode leg already in the lobby or the call: its driver sees no new event for this session.
            await self._apply(key, meeting, leg.state, None)
            session = await self._store.get_session(session.id) or session
        return session

    async def leave(self, session: Session, reason: str = "left") -> None:
        """The user leaves (or is taken out): the session ends and the leg hangs up once nobody uses it."""
        await self._finish(session, S.LEFT, reason)
        assert session.identity_id is not None
        key = (session.meeting_id, session.identity_id)
        if await self._leg_sessions(key):
            return
        leg = self._legs.get(key)
        if leg is not None:
            leg.leaving = True
        call_id = session.call_id or (leg.call_id if leg is not None else None)
        if call_id:
            try:
                await self._connector.leave(call_id, await self._broker.token(session.identity_id))
            except (TransientError, PermanentError) as exc:
                log.warning("leaving call of session %d failed: %s", session.id, exc)

    async def report(self, session: Session, state: CallState, client_call: str | None = None) -> Reported | None:
        """The user's own app says where its call leg stands; the leg's watch carries it to the sessions, as any
        connector's event. None when the session has no call to report on yet (its join is still being set up)."""
        assert self._reports is not None and session.identity_id is not None
        leg = self._legs.get((session.meeting_id, session.identity_id))
        call_id = session.call_id or (leg.call_id if leg is not None else None)
        if call_id is None:
            return None
        driven = leg is not None and leg.task is not None and not leg.task.done()
        leaving = state == CallState.LEFT and leg is not None and not leg.leaving
        if leaving and leg is not None:
            # Set before the report, with no wait between: the driver must see the app's hang-up as a leave, not as
            # a drop to join again. Undone at once if the report did not count.
            leg.leaving = True
        reported = self._reports.report(call_id, state, client_call=client_call)
        if leaving and leg is not None and reported.verdict != ReportVerdict.TAKEN:
            leg.leaving = False
        if reported.verdict == ReportVerdict.TAKEN and not driven:
            # No driver watches this leg (it gave up, or never started): the session is moved here instead.
            meeting = await self._store.get_meeting(session.meeting_id)
            if meeting is not None:
                await self._apply((session.meeting_id, session.identity_id), meeting, state, None)
        elif state == CallState.CONNECTED and reported.verdict == ReportVerdict.SAME:
            # The app says again that it is in the call: messages held since ACS last said otherwise may go now.
            fresh = await self._store.get_session(session.id)
            if fresh is not None and fresh.state == S.IN_CALL and await self._store.release_held(session.id):
                self._events.in_call(session.meeting_id)
        return reported

    async def resume(self) -> int:
        """After a restart, pick up every active session's leg without bothering its users again."""
        keys = {(s.meeting_id, s.identity_id) for s in await self._store.sessions(states=machine.ACTIVE)}
        for meeting_id, identity in keys:
            if identity is not None:
                self._ensure_leg(meeting_id, identity)
        return len(keys)

    def recheck(self, session: Session) -> None:
        """ACS said the identity is not in the call: make sure the leg's driver looks again."""
        if session.identity_id is not None:
            self._ensure_leg(session.meeting_id, session.identity_id, force=True)

    async def forbidden(self, meeting_id: str, identity: str, reason: str, *, recheck: bool = True) -> bool:
        """ACS answered 403 on the meeting's thread for this identity, which means one of two things: told apart by
        the leg's state, as the connector gives it now. Connected: the meeting refuses the chat (a tenant setting, a
        service fault), which the events hear of (True). Otherwise the identity is not in the call (False), and with
        `recheck` its leg's driver looks again; without, it is left to learn of it from its own watch."""
        leg = self._legs.get((meeting_id, identity))
        if leg is not None and leg.call_id is not None and leg.state == CallState.CONNECTED:
            try:
                handle = await self._connector.get(leg.call_id, await self._broker.token(identity))
            except (TransientError, PermanentError) as exc:
                log.info("meeting %s: could not ask where the call leg stands: %s", meeting_id, exc)
            else:
                if handle.state == CallState.CONNECTED:
                    await self._events.chat_refused(meeting_id, reason)
                    return True
        if recheck:
            self._ensure_leg(meeting_id, identity, force=True)
        return False

    async def sweep_inactive(self) -> int:
        cutoff = utcnow() - timedelta(seconds=self._settings.inactivity_timeout_s)
        taken = 0
        for session in await self._store.sessions(states=[S.IN_CALL]):
            if session.last_activity is not None and session.last_activity < cutoff:
                await self.leave(session, "inactive")
                taken += 1
        return taken

    # the leg driver ---------------------------------------------------------------------------------

    def _ensure_leg(self, meeting_id: str, identity: str, *, force: bool = False) -> None:
        key = (meeting_id, identity)
        leg = self._legs.setdefault(key, _Leg(meeting_id, identity))
        if leg.task is not None and not leg.task.done():
            if not force:
                return
            leg.task.cancel()
        leg.leaving = False
        # Through an outage of the store the leg is watched afresh once it is back: its first event says where it is.
        leg.task = self._tasks.spawn(outlasting(self._store, partial(self._drive, key)), name=f"leg {meeting_id}")

    async def _leg_sessions(self, key: tuple[str, str]) -> list[Session]:
        return [s for s in await self._store.sessions(key[0], machine.ACTIVE) if s.identity_id == key[1]]

    async def _drive(self, key: tuple[str, str]) -> None:
        failures = 0
        gone: str | None = None
        """A call this leg no longer holds (dropped without being asked to, or unknown to the service)."""
        token = partial(self._broker.token, key[1])
        while True:
            sessions = await self._leg_sessions(key)
            meeting = await self._store.get_meeting(key[0])
            leg = self._legs[key]
            if not sessions or meeting is None or leg.leaving:
                return
            call_id = None
            try:
                call_id = next((s.call_id for s in sessions if s.call_id and s.call_id != gone), None)
                if call_id is None:
                    # Issued before the sessions are read again, so whoever leaves meanwhile is never joined.
                    await token()
                    handle = await self._join(key, meeting, token)
                    if handle is None:
                        return  # everyone left before the join went out
                    call_id = handle.call_id
                leg.call_id = call_id
                if leg.leaving or not await self._leg_sessions(key):
                    # Everyone left while the join was under way (leave had no call id yet): hang up here.
                    await self._connector.leave(call_id, await token())
                    return
                final: CallEvent | None = None
                connected_at: float | None = None
                # The watch's first event is where the call stands now: a leg taken up after a restart needs no
                # lookup of its own, and the token is asked for only if the connector needs one.
                async for event in self._connector.watch(call_id, token):
                    if event.state in (CallState.LEFT, CallState.DROPPED) and not leg.leaving:
                        final = event  # lost without being asked to: re-join below
                        leg.state = None  # a session joining meanwhile waits for the new leg, not the lost one
                        break
                    if event.state == CallState.CONNECTED and connected_at is None:
                        connected_at = asyncio.get_running_loop().time()
                    await self._apply(key, meeting, event.state, event.reason)
                    if event.state.final:
                        final = event
                        break
                if final is None:
                    raise TransientError("the call's event stream ended without a final state")
                if leg.leaving or final.state in (CallState.REMOVED, CallState.ENDED, CallState.FAILED):
                    return
                gone = call_id
                if connected_at is not None and asyncio.get_running_loop().time() - connected_at >= HEALTHY_AFTER_S:
                    # Only drops in a row give up on a leg: one that held for a while starts its count afresh.
                    failures = 0
                failures += 1
                log.warning("call leg of meeting %s dropped (%s); re-joining", key[0], final.reason or final.state)
            except NotFoundError:
                # The service no longer knows the call (or a restarted connector never held it): join again, at once.
                gone = call_id
                continue
            except PermanentError as exc:
                await self._apply(key, meeting, CallState.FAILED, str(exc))
                return
            except StaleTokenError as exc:
                # The cached token was refused although it looked current: the re-join asks for a new one.
                self._broker.forget_token(key[1])
                gone = call_id
                failures += 1
                log.warning("call leg of meeting %s: %s; re-joining with a new token", key[0], exc)
            except TransientError as exc:
                failures += 1
                log.warning("call leg of meeting %s: %s (attempt %d)", key[0], exc, failures)
            if failures > MAX_REJOINS:
                await self._apply(key, meeting, CallState.FAILED, "the meeting call could not be reached")
                return
            await asyncio.sleep(REJOIN.delay(failures))

    async def _join(self, key: tuple[str, str], meeting: Meeting, token: TokenSource) -> CallHandle | None:
        # Read again: whoever left while the token was fetched must not be moved back to joining.
        sessions = await self._leg_sessions(key)
        if not sessions or self._legs[key].leaving:
            return None
        for session in sessions:
            if session.state != S.JOINING:
                # One that was in the lobby or the call is coming back: what it is told next says so (rejoin_notice).
                back = session.state in (S.LOBBY, S.IN_CALL)
                await self._move(session, S.JOINING, machine.REJOINING if back else None)
        name = speaker_name(meeting, await self._store.get_user(sessions[0].user_id))
        if meeting.join_meeting_id and meeting.passcode:
            handle = await self._connector.join(
                token, meeting_id=meeting.join_meeting_id, passcode=meeting.passcode, display_name=name
            )
        else:
            handle = await self._connector.join(token, meeting_link=meeting.link, display_name=name)
        if meeting.thread_id is None and handle.thread_id:
            await self._store.update_meeting(meeting.id, thread_id=handle.thread_id)
        for session in await self._leg_sessions(key):
            await self._store.set_session_state(session.id, session.state, session.reason, call_id=handle.call_id)
        log.info("call leg joined for meeting %s: %s", meeting.id, handle.state)
        return handle

    async def _apply(self, key: tuple[str, str], meeting: Meeting, call: CallState, reason: str | None) -> None:
        target = machine.from_call(call)
        if call == CallState.REMOVED:
            reason = "removed"
        leg = self._legs.get(key)
        call_id = leg.call_id if leg is not None else None
        # One at a time per leg: the driver and a joining session may both apply the leg's state.
        async with self._locks.setdefault(key, asyncio.Lock()):
            if leg is not None:
                leg.state = call
            for session in await self._leg_sessions(key):
                if session.state == target:
                    if target == S.IN_CALL and session.condition is None:
                        # Still in the call after all (a 403 had it looked at again): what that 403 held goes out.
                        await self._store.release_held(session.id)
                    continue
                if target == S.FAILED or target in machine.FINAL:
                    await self._finish(session, target, reason)
                    continue
                if not machine.can_transition(session.state, target):
                    # Back from the call to the lobby: a way back in, told as a re-join is.
                    back = session.state in (S.LOBBY, S.IN_CALL)
                    await self._move(session, S.JOINING, machine.REJOINING if back else None)
                await self._move(session, target, reason, meeting, call_id)
        if target == S.IN_CALL:
            self._events.in_call(meeting.id)

    async def _move(
        self,
        session: Session,
        target: S,
        reason: str | None,
        meeting: Meeting | None = None,
        call_id: str | None = None,
    ) -> None:
        label = meeting.name if meeting is not None else "the meeting"
        if session.reason == machine.REJOINING and target in (S.LOBBY, S.IN_CALL):
            text = machine.rejoin_notice(target, label, was_in_call=session.joined_at is not None)
            if target == S.LOBBY:
                reason = machine.REJOINING  # still on the way back: reaching the call says what may be missing
        else:
            text = machine.notice(target, label, reason)
        notes = [notice(session, text, target.value)] if text else []
        await self._store.set_session_state(
            session.id,
            target,
            reason,
            call_id=call_id,
            joined_at=utcnow() if target == S.IN_CALL and session.joined_at is None else None,
            notices=notes,
            held=DeliveryState.PENDING if target == S.IN_CALL else None,
        )
        session.state, session.reason = target, reason
        log.info("session %d → %s", session.id, target.value)
        if notes:
            self._events.notify(session.user_id)

    async def _finish(self, session: Session, target: S, reason: str | None) -> None:
        fresh = await self._store.get_session(session.id)
        if fresh is None or fresh.state in machine.FINAL:
            return
        meeting = await self._store.get_meeting(session.meeting_id)
        label = meeting.name if meeting is not None else "the meeting"
        notes = []
        text = machine.notice(target, label, reason)
        if text:
            notes.append(notice(session, text, target.value))
        held = await self._store.count_held(session.id)
        if held:
            notes.append(notice(session, machine.undelivered_notice(held, label), "undelivered"))
        await self._store.set_session_state(
            session.id, target, reason, notices=notes, held=DeliveryState.FAILED if held else None
        )
        log.info("session %d → %s (%s)", session.id, target.value, reason or "-")
        self._events.notify(session.user_id)
