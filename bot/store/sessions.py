"""Sessions in the store: their state, every transition, and what happens to held messages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import aiosqlite

from ..models import DeliveryState, Session, SessionState
from .base import NewDelivery, StoreBase, _dt, _ts, utcnow

# Spelled as the partial index one_active_session spells it (migration 1): SQLite uses a partial index only for a
# query whose condition matches the index's own. Spelled otherwise (the states sorted), a user's active session
# was looked for among all of the meeting's sessions, and without a meeting among every session there is.
_ACTIVE_SQL = "('requested', 'joining', 'lobby', 'in_call')"


class SessionStore(StoreBase):
    # sessions ---------------------------------------------------------------------------------------

    @staticmethod
    def _session(row: aiosqlite.Row) -> Session:
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
        row = await self._one("SELECT * FROM sessions WHERE id=?", (session_id,))
        return self._session(row) if row else None

    async def active_session(self, user_id: str, meeting_id: str) -> Session | None:
        row = await self._one(
            f"SELECT * FROM sessions WHERE user_id=? AND meeting_id=? AND state IN {_ACTIVE_SQL}",
            (user_id, meeting_id),
        )
        return self._session(row) if row else None

    async def current_session(self, user_id: str) -> Session | None:
        """The user's latest active session in any meeting: a phone is in one meeting at a time."""
        row = await self._one(
            f"SELECT * FROM sessions WHERE user_id=? AND state IN {_ACTIVE_SQL} ORDER BY id DESC LIMIT 1", (user_id,)
        )
        return self._session(row) if row else None

    async def sessions(
        self, meeting_id: str | None = None, states: Iterable[SessionState] | None = None
    ) -> list[Session]:
        sql, args = "SELECT * FROM sessions WHERE 1=1", []
        if meeting_id is not None:
            sql, args = sql + " AND meeting_id=?", [meeting_id]
        wanted = list(states) if states is not None else None
        if wanted is not None:
            sql += f" AND state IN ({','.join('?' * len(wanted))})"
            args += [s.value for s in wanted]
        return [self._session(r) for r in await self._all(sql + " ORDER BY id", args)]

    async def create_session(self, user_id: str, meeting_id: str, identity_id: str | None) -> Session:
        now = _ts(utcnow())
        async with self.transaction() as db:
            cur = await db.execute(
                """INSERT INTO sessions (user_id, meeting_id, state, identity_id, last_activity, created_at,
                   updated_at) VALUES (?,?,?,?,?,?,?)""",
                (user_id, meeting_id, SessionState.REQUESTED.value, identity_id, now, now, now),
            )
            session_id = int(cur.lastrowid or 0)
            await db.execute(
                "INSERT INTO session_events (session_id, state, at) VALUES (?,?,?)",
                (session_id, SessionState.REQUESTED.value, now),
            )
        session = await self.get_session(session_id)
        assert session is not None
        return session

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
        async with self.transaction() as db:
            await db.execute(
                """UPDATE sessions SET state=?, reason=?, call_id=COALESCE(?, call_id),
                   joined_at=COALESCE(?, joined_at), updated_at=?,
                   condition=CASE WHEN ? THEN condition END, condition_reason=CASE WHEN ? THEN condition_reason END
                   WHERE id=?""",
                (state.value, reason, call_id, _ts(joined_at), now, in_call, in_call, session_id),
            )
            await db.execute(
                "INSERT INTO session_events (session_id, state, reason, at) VALUES (?,?,?,?)",
                (session_id, state.value, reason, now),
            )
            if held is not None:
                await db.execute(
                    "UPDATE outbox SET state=?, last_error=?, updated_at=? WHERE session_id=? AND state='held'",
                    (held.value, None if held == DeliveryState.PENDING else reason, now, session_id),
                )
            await self._insert_deliveries(db, notices)

    async def touch_session(self, session_id: int) -> None:
        async with self.transaction() as db:
            await db.execute("UPDATE sessions SET last_activity=? WHERE id=?", (_ts(utcnow()), session_id))

    async def session_events(self, session_id: int) -> list[tuple[str, str | None]]:
        rows = await self._all(
            "SELECT state, reason FROM session_events WHERE session_id=? ORDER BY rowid", (session_id,)
        )
        return [(r["state"], r["reason"]) for r in rows]

    async def count_held(self, session_id: int) -> int:
        row = await self._one("SELECT COUNT(*) FROM outbox WHERE session_id=? AND state='held'", (session_id,))
        return int(row[0]) if row else 0

    async def release_held(self, session_id: int) -> int:
        """Held messages of a session that reached the call become pending (closes the race with a transition)."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE outbox SET state='pending', updated_at=? WHERE session_id=? AND state='held'",
                (_ts(utcnow()), session_id),
            )
            return cur.rowcount

    async def session_counts(self) -> dict[str, int]:
        rows = await self._all("SELECT state, COUNT(*) FROM sessions GROUP BY state")
        return {r[0]: int(r[1]) for r in rows}

    # conditions of sessions in the call ----------------------------------------------------------------

    async def set_condition(
        self, session_ids: Iterable[int], condition: str, reason: str, notices: Iterable[NewDelivery] = ()
    ) -> None:
        """Mark sessions that are in the call with a condition and its reason, with the notices telling them."""
        ids = list(session_ids)
        async with self.transaction() as db:
            await db.executemany(
                "UPDATE sessions SET condition=?, condition_reason=?, updated_at=? WHERE id=? AND state='in_call'",
                [(condition, reason, _ts(utcnow()), i) for i in ids],
            )
            await self._insert_deliveries(db, notices)

    async def clear_condition(self, session_ids: Iterable[int], notices: Iterable[NewDelivery] = ()) -> int:
        """The condition is over: clear it, release what it held (pending again), tell them; the number released."""
        ids = list(session_ids)
        now = _ts(utcnow())
        released = 0
        async with self.transaction() as db:
            for session_id in ids:
                await db.execute(
                    "UPDATE sessions SET condition=NULL, condition_reason=NULL, updated_at=? WHERE id=?",
                    (now, session_id),
                )
                cur = await db.execute(
                    "UPDATE outbox SET state='pending', updated_at=? WHERE session_id=? AND state='held'",
                    (now, session_id),
                )
                released += cur.rowcount
            await self._insert_deliveries(db, notices)
        return released

    async def held_since(self, session_ids: Iterable[int]) -> datetime | None:
        """When the oldest message held for these sessions was accepted."""
        ids = list(session_ids)
        if not ids:
            return None
        row = await self._one(
            f"SELECT MIN(created_at) FROM outbox WHERE state='held' AND session_id IN ({','.join('?' * len(ids))})",
            ids,
        )
        return _dt(row[0]) if row else None

    async def expire_held(self, session_id: int, before: datetime, reason: str) -> int:
        """Fail the session's held messages accepted before `before`, with the reason; how many."""
        async with self.transaction() as db:
            cur = await db.execute(
                """UPDATE outbox SET state='failed', last_error=?, updated_at=?
                   WHERE session_id=? AND state='held' AND created_at < ?""",
                (reason, _ts(utcnow()), session_id, _ts(before)),
            )
            return cur.rowcount

    async def condition_counts(self, condition: str) -> dict[str, int]:
        """Sessions in the call with this condition, by meeting."""
        rows = await self._all(
            "SELECT meeting_id, COUNT(*) FROM sessions WHERE state='in_call' AND condition=? GROUP BY meeting_id",
            (condition,),
        )
        return {r[0]: int(r[1]) for r in rows}
