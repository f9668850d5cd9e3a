"""The store on SQLite (aiosqlite, WAL): meetings, users, sessions, the inbox of provider ids and the outbox."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from ..models import (
    Delivery,
    DeliveryState,
    Direction,
    ExternalUser,
    IdentityMode,
    Meeting,
    Session,
    SessionState,
)
from ..sessions import ACTIVE
from .migrations import MIGRATIONS

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class NewDelivery:
    id: str
    direction: Direction
    meeting_id: str
    user_id: str
    kind: str
    body: dict[str, Any]
    state: DeliveryState = DeliveryState.PENDING
    session_id: int | None = None


_ACTIVE_SQL = "('" + "','".join(sorted(ACTIVE)) + "')"


class Store:
    """One connection, one writer at a time; every multi-row change is one transaction."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA busy_timeout=5000")
        store = cls(db)
        try:
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            async with self.transaction() as db:
                for statement in filter(str.strip, script.split(";")):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version={number}")
            log.info("store migrated to schema %d", number)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    async def _one(self, sql: str, args: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self._db.execute(sql, tuple(args)) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, args: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._db.execute(sql, tuple(args)) as cur:
            return list(await cur.fetchall())

    async def writable(self) -> bool:
        try:
            async with self.transaction() as db:
                await db.execute("CREATE TEMP TABLE IF NOT EXISTS probe (x)")
            return True
        except aiosqlite.Error:
            return False

    # meetings ---------------------------------------------------------------------------------------

    @staticmethod
    def _meeting(row: aiosqlite.Row) -> Meeting:
        return Meeting(
            id=row["id"],
            code=row["code"],
            name=row["name"],
            link=row["link"],
            thread_id=row["thread_id"],
            join_meeting_id=row["join_meeting_id"],
            passcode=row["passcode"],
            organizer_id=row["organizer_id"],
            identity_mode=IdentityMode(row["identity_mode"]),
            display_name_template=row["display_name_template"],
            allow=json.loads(row["allow"]),
            paused=bool(row["paused"]),
            relay_identity=row["relay_identity"],
            cursor=row["cursor"],
        )

    async def upsert_meeting(self, m: Meeting, source: str = "config") -> None:
        async with self.transaction() as db:
            await db.execute(
                """INSERT INTO meetings (id, code, name, link, thread_id, join_meeting_id, passcode, organizer_id,
                       identity_mode, display_name_template, allow, paused, source, created_at)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET code=excluded.code, name=excluded.name, link=excluded.link,
                       thread_id=COALESCE(excluded.thread_id, meetings.thread_id),
                       join_meeting_id=excluded.join_meeting_id, passcode=excluded.passcode,
                       organizer_id=excluded.organizer_id, identity_mode=excluded.identity_mode,
                       display_name_template=excluded.display_name_template, allow=excluded.allow""",
                (
                    m.id,
                    m.code,
                    m.name,
                    m.link,
                    m.thread_id,
                    m.join_meeting_id,
                    m.passcode,
                    m.organizer_id,
                    m.identity_mode.value,
                    m.display_name_template,
                    json.dumps(m.allow),
                    int(m.paused),
                    source,
                    _ts(utcnow()),
                ),
            )

    async def get_meeting(self, meeting_id: str) -> Meeting | None:
        row = await self._one("SELECT * FROM meetings WHERE id=?", (meeting_id,))
        return self._meeting(row) if row else None

    async def meeting_by_thread(self, thread_id: str) -> Meeting | None:
        row = await self._one("SELECT * FROM meetings WHERE thread_id=?", (thread_id,))
        return self._meeting(row) if row else None

    async def meeting_by_code(self, code: str) -> Meeting | None:
        row = await self._one("SELECT * FROM meetings WHERE code=?", (code,))
        return self._meeting(row) if row else None

    async def list_meetings(self) -> list[Meeting]:
        return [self._meeting(r) for r in await self._all("SELECT * FROM meetings ORDER BY created_at, id")]

    async def update_meeting(self, meeting_id: str, **fields: Any) -> None:
        allowed = {"thread_id", "relay_identity", "cursor", "paused", "name"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update meeting fields {sorted(set(fields) - allowed)}")
        sets = ", ".join(f"{k}=?" for k in fields)
        async with self.transaction() as db:
            await db.execute(f"UPDATE meetings SET {sets} WHERE id=?", (*fields.values(), meeting_id))

    async def meeting_ids(self, source: str) -> set[str]:
        return {r[0] for r in await self._all("SELECT id FROM meetings WHERE source=?", (source,))}

    async def delete_meeting(self, meeting_id: str) -> None:
        async with self.transaction() as db:
            await db.execute("DELETE FROM outbox WHERE meeting_id=?", (meeting_id,))
            await db.execute("DELETE FROM meetings WHERE id=?", (meeting_id,))

    # users ------------------------------------------------------------------------------------------

    @staticmethod
    def _user(row: aiosqlite.Row) -> ExternalUser:
        return ExternalUser(
            id=row["id"],
            channel=row["channel"],
            display_name=row["display_name"],
            identity_id=row["identity_id"],
            blocked=bool(row["blocked"]),
            opted_out=bool(row["opted_out"]),
        )

    async def get_user(self, user_id: str) -> ExternalUser | None:
        row = await self._one("SELECT * FROM users WHERE id=?", (user_id,))
        return self._user(row) if row else None

    async def upsert_user(self, user_id: str, channel: str, display_name: str | None) -> ExternalUser:
        async with self.transaction() as db:
            await db.execute(
                """INSERT INTO users (id, channel, display_name, created_at) VALUES (?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET display_name=COALESCE(?, users.display_name)""",
                (user_id, channel, display_name or user_id.split("/")[-1], _ts(utcnow()), display_name),
            )
        user = await self.get_user(user_id)
        assert user is not None
        return user

    async def update_user(self, user_id: str, **fields: Any) -> None:
        allowed = {"identity_id", "blocked", "opted_out", "display_name"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update user fields {sorted(set(fields) - allowed)}")
        sets = ", ".join(f"{k}=?" for k in fields)
        async with self.transaction() as db:
            await db.execute(f"UPDATE users SET {sets} WHERE id=?", (*fields.values(), user_id))

    async def drop_identity(self, identity_id: str) -> None:
        async with self.transaction() as db:
            await db.execute("UPDATE users SET identity_id=NULL WHERE identity_id=?", (identity_id,))
            await db.execute("UPDATE meetings SET relay_identity=NULL WHERE relay_identity=?", (identity_id,))

    async def forget_user(self, user_id: str) -> None:
        """Delete the user, their sessions and every stored message to or from them."""
        async with self.transaction() as db:
            await db.execute("DELETE FROM outbox WHERE user_id=?", (user_id,))
            await db.execute("DELETE FROM users WHERE id=?", (user_id,))

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
        """Store a transition with its event row, the notices it causes, and what happens to held messages."""
        now = _ts(utcnow())
        async with self.transaction() as db:
            await db.execute(
                """UPDATE sessions SET state=?, reason=?, call_id=COALESCE(?, call_id),
                   joined_at=COALESCE(?, joined_at), updated_at=? WHERE id=?""",
                (state.value, reason, call_id, _ts(joined_at), now, session_id),
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

    # inbox and outbox -------------------------------------------------------------------------------

    async def _insert_deliveries(self, db: aiosqlite.Connection, items: Iterable[NewDelivery]) -> None:
        now = _ts(utcnow())
        await db.executemany(
            """INSERT INTO outbox (id, direction, meeting_id, user_id, session_id, kind, body, state,
               next_attempt_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)""",
            [
                (
                    d.id,
                    d.direction.value,
                    d.meeting_id,
                    d.user_id,
                    d.session_id,
                    d.kind,
                    json.dumps(d.body),
                    d.state.value,
                    now,
                    now,
                    now,
                )
                for d in items
            ],
        )

    async def inbox_answer(self, channel: str, provider_id: str) -> tuple[int, dict[str, Any]] | None:
        row = await self._one(
            "SELECT status, answer FROM inbox WHERE channel=? AND provider_id=?", (channel, provider_id)
        )
        return (int(row["status"]), json.loads(row["answer"])) if row else None

    async def record_inbound(
        self, channel: str, provider_id: str, status: int, answer: dict[str, Any], delivery: NewDelivery | None
    ) -> tuple[int, dict[str, Any], bool]:
        """Store the provider id, its answer and the outbox row together; a repeated id gets the first answer."""
        async with self.transaction() as db:
            async with db.execute(
                "SELECT status, answer FROM inbox WHERE channel=? AND provider_id=?", (channel, provider_id)
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                return int(row["status"]), json.loads(row["answer"]), False
            await db.execute(
                "INSERT INTO inbox (channel, provider_id, status, answer, received_at) VALUES (?,?,?,?,?)",
                (channel, provider_id, status, json.dumps(answer), _ts(utcnow())),
            )
            if delivery is not None:
                await self._insert_deliveries(db, [delivery])
        return status, answer, True

    async def add_deliveries(self, items: Iterable[NewDelivery]) -> None:
        async with self.transaction() as db:
            await self._insert_deliveries(db, items)

    async def record_outbound(
        self, meeting_id: str, message_id: str, version: str, items: Iterable[NewDelivery], cursor: str | None = None
    ) -> bool:
        """Fan a thread message out once, advancing the meeting's cursor with it; False if already seen."""
        async with self.transaction() as db:
            if cursor is not None:
                await db.execute("UPDATE meetings SET cursor=? WHERE id=?", (cursor, meeting_id))
            cur = await db.execute(
                "INSERT OR IGNORE INTO seen_messages (meeting_id, message_id, version) VALUES (?,?,?)",
                (meeting_id, message_id, version),
            )
            if cur.rowcount == 0:
                return False
            await self._insert_deliveries(db, items)
        return True

    @staticmethod
    def _delivery(row: aiosqlite.Row) -> Delivery:
        return Delivery(
            id=row["id"],
            seq=row["seq"],
            direction=Direction(row["direction"]),
            meeting_id=row["meeting_id"],
            user_id=row["user_id"],
            kind=row["kind"],
            body=json.loads(row["body"]),
            state=DeliveryState(row["state"]),
            attempts=row["attempts"],
            next_attempt_at=_dt(row["next_attempt_at"]),
            last_error=row["last_error"],
            remote_id=row["remote_id"],
            session_id=row["session_id"],
            created_at=_dt(row["created_at"]),
        )

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = await self._one("SELECT * FROM outbox WHERE id=?", (delivery_id,))
        return self._delivery(row) if row else None

    async def pending(self, direction: Direction, key_column: str, key: str, limit: int = 50) -> list[Delivery]:
        """Pending rows of one meeting (inbound) or one user (outbound), oldest first."""
        if key_column not in ("meeting_id", "user_id"):
            raise ValueError(key_column)
        rows = await self._all(
            f"""SELECT * FROM outbox WHERE direction=? AND state='pending' AND {key_column}=?
                ORDER BY seq LIMIT ?""",
            (direction.value, key, limit),
        )
        return [self._delivery(r) for r in rows]

    async def pending_keys(self, direction: Direction, key_column: str) -> list[str]:
        if key_column not in ("meeting_id", "user_id"):
            raise ValueError(key_column)
        rows = await self._all(
            f"SELECT DISTINCT {key_column} FROM outbox WHERE direction=? AND state='pending'", (direction.value,)
        )
        return [r[0] for r in rows]

    async def mark_attempt(self, ids: list[str]) -> None:
        async with self.transaction() as db:
            await db.executemany(
                "UPDATE outbox SET attempts=attempts+1, updated_at=? WHERE id=?", [(_ts(utcnow()), i) for i in ids]
            )

    async def finish(
        self,
        ids: list[str],
        state: DeliveryState,
        *,
        remote_id: str | None = None,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        async with self.transaction() as db:
            await db.executemany(
                """UPDATE outbox SET state=?, remote_id=COALESCE(?, remote_id), last_error=?,
                   next_attempt_at=?, updated_at=? WHERE id=?""",
                [(state.value, remote_id, error, _ts(next_attempt_at), _ts(utcnow()), i) for i in ids],
            )

    async def deliveries(
        self,
        *,
        meeting_id: str | None = None,
        user_id: str | None = None,
        state: DeliveryState | None = None,
        direction: Direction | None = None,
        limit: int = 500,
    ) -> list[Delivery]:
        sql, args = "SELECT * FROM outbox WHERE 1=1", []
        for column, value in (
            ("meeting_id", meeting_id),
            ("user_id", user_id),
            ("state", state),
            ("direction", direction),
        ):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(value.value if isinstance(value, DeliveryState | Direction) else value)
        return [self._delivery(r) for r in await self._all(sql + " ORDER BY seq LIMIT ?", [*args, limit])]

    async def outbox_depth(self) -> dict[str, int]:
        rows = await self._all("SELECT direction, COUNT(*) FROM outbox WHERE state IN ('pending','held') GROUP BY 1")
        return {r[0]: int(r[1]) for r in rows}

    async def identities(self) -> set[str]:
        """Every ACS identity the bridge speaks as: the bridge must never relay its own messages back."""
        rows = await self._all(
            "SELECT identity_id FROM users WHERE identity_id IS NOT NULL "
            "UNION SELECT relay_identity FROM meetings WHERE relay_identity IS NOT NULL"
        )
        return {r[0] for r in rows}

    async def release_held(self, session_id: int) -> int:
        """Held messages of a session that reached the call become pending (closes the race with a transition)."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE outbox SET state='pending', updated_at=? WHERE session_id=? AND state='held'",
                (_ts(utcnow()), session_id),
            )
            return cur.rowcount
