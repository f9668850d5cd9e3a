"""Sessions in the store: their state, every transition, and what happens to held messages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..models import DeliveryState, Session, SessionState
from .base import NewDelivery, Row, StoreBase, _dt, _ts, utcnow


class SessionStore(StoreBase):
    # sessions ---------------------------------------------------------------------------------------

    @staticmethod
    def _session(row: Row) -> Session:
        return Session(
            id=row["id"],
            user_id=row["user_id"],
            meeting_id=row["meeting_id"],
            state=SessionState(row["state"]),
            call_id=row["call_id"],
            reason=row["reason"],
            joined_at=_dt(row["joined_at"]),
            last_activity=_dt(row["last_activity"]),
            identity_id=row["identity_id"],
            condition=row["condition"],
            condition_reason=row["condition_reason"],
        )

    async def get_session(self, session_id: int) -> Session | None:
        row = await self._one(self.sql.get_session, (session_id,))
        return self._session(row) if row else None

    async def active_session(self, user_id: str, meeting_id: str) -> Session | None:
        row = await self._one(self.sql.active_session, (user_id, meeting_id))
        return self._session(row) if row else None

    async def current_session(self, user_id: str) -> Session | None:
        """The user's latest active session in any meeting: a phone is in one meeting at a time."""
        row = await self._one(self.sql.current_session, (user_id,))
        return self._session(row) if row else None

    async def sessions(
        self, meeting_id: str | None = None, states: Iterable[SessionState] | None = None
    ) -> list[Session]:
        wanted = [s.value for s in states] if states is not None else None
        sql, args = self.sql.sessions(meeting_id, wanted)
        return [self._session(r) for r in await self._all(sql, args)]

    async def create_session(self, user_id: str, meeting_id: str, identity_id: str | None) -> Session:
        now = _ts(utcnow())
        async with self.transaction() as tx:
            row = await tx.one(
                self.sql.insert_session,
                (user_id, meeting_id, SessionState.REQUESTED.value, identity_id, now, now, now),
            )
            assert row is not None
            await tx.run(self.sql.insert_session_event, (row["id"], SessionState.REQUESTED.value, None, now))
        return self._session(row)

    async def set_session_state(
        self,
        session_id: int,
        state: SessionState,
        reason: str | None = None,
        *,
        call_id: str | None = None,
        joined_at: datetime | None = None,
        notices: Iterable[NewDelivery] = (),
        held: DeliveryState | None = None,
    ) -> None:
        """Store a transition with its event row, the notices it causes, and what happens to held messages. A
        condition holds only in the call: leaving it clears the condition."""
        now = _ts(utcnow())
        in_call = state == SessionState.IN_CALL
        async with self.transaction() as tx:
            await tx.run(
                self.sql.set_session_state,
                (state.value, reason, call_id, _ts(joined_at), now, in_call, session_id),
            )
            await tx.run(self.sql.insert_session_event, (session_id, state.value, reason, now))
            if held is not None:
                error = None if held == DeliveryState.PENDING else reason
                await tx.run(self.sql.settle_held, (held.value, error, now, session_id))
            await self._insert_deliveries(tx, notices)

    async def touch_session(self, session_id: int) -> None:
        async with self.one_statement() as tx:
            await tx.run(self.sql.touch_session, (_ts(utcnow()), session_id))

    async def session_events(self, session_id: int) -> list[tuple[str, str | None]]:
        rows = await self._all(self.sql.session_events, (session_id,))
        return [(r["state"], r["reason"]) for r in rows]

    async def count_held(self, session_id: int) -> int:
        row = await self._one(self.sql.count_held, (session_id,))
        return int(row[0]) if row else 0

    async def release_held(self, session_id: int) -> int:
        """Held messages of a session that reached the call become pending (closes the race with a transition)."""
        async with self.one_statement() as tx:
            return await tx.run(self.sql.release_held, (_ts(utcnow()), session_id))

    async def session_counts(self) -> dict[str, int]:
        rows = await self._all(self.sql.session_counts)
        return {r[0]: int(r[1]) for r in rows}

    # conditions of sessions in the call ----------------------------------------------------------------

    async def set_condition(
        self, session_ids: Iterable[int], condition: str, reason: str, notices: Iterable[NewDelivery] = ()
    ) -> None:
        """Mark sessions that are in the call with a condition and its reason, with the notices telling them."""
        now = _ts(utcnow())
        async with self.transaction() as tx:
            await tx.run_many(self.sql.set_condition, [(condition, reason, now, i) for i in session_ids])
            await self._insert_deliveries(tx, notices)

    async def clear_condition(self, session_ids: Iterable[int], notices: Iterable[NewDelivery] = ()) -> int:
        """The condition is over: clear it, release what it held (pending again), tell them; the number released."""
        now = _ts(utcnow())
        released = 0
        async with self.transaction() as tx:
            for session_id in session_ids:
                await tx.run(self.sql.clear_condition, (now, session_id))
                released += await tx.run(self.sql.release_held, (now, session_id))
            await self._insert_deliveries(tx, notices)
        return released

    async def held_since(self, session_ids: Iterable[int]) -> datetime | None:
        """When the oldest message held for these sessions was accepted."""
        ids = list(session_ids)
        if not ids:
            return None
        sql, args = self.sql.held_since(ids)
        row = await self._one(sql, args)
        return _dt(row[0]) if row else None

    async def expire_held(self, session_id: int, before: datetime, reason: str) -> int:
        """Fail the session's held messages accepted before `before`, with the reason; how many."""
        async with self.one_statement() as tx:
            return await tx.run(self.sql.expire_held, (reason, _ts(utcnow()), session_id, _ts(before)))

    async def condition_counts(self, condition: str) -> dict[str, int]:
        """Sessions in the call with this condition, by meeting."""
        return {r[0]: int(r[1]) for r in await self._all(self.sql.condition_counts, (condition,))}
