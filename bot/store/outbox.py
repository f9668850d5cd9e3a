"""The inbox of provider ids and the outbox of deliveries in both directions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import aiosqlite

from ..models import Delivery, DeliveryState, Direction
from .base import NewDelivery, StoreBase, _dt, _ts, utcnow

# A notice's body names what it is about in "state"; this one stands for a whole episode and is never trimmed.
BACKLOG_NOTICE = "backlog_full"
_IS_BACKLOG_NOTICE = f"(kind='notice' AND json_extract(body, '$.state')='{BACKLOG_NOTICE}')"
_WAITING_FOR_USER = f"user_id=? AND direction='{Direction.OUTBOUND.value}' AND state='pending'"


class BacklogFull(Exception):
    """A new inbound message would take a meeting's or a user's waiting messages past its limit."""

    def __init__(self, scope: str, waiting: int, head_due: datetime | None) -> None:
        super().__init__(f"the {scope}'s backlog is full ({waiting} waiting)")
        self.scope = scope
        """meeting or user"""
        self.waiting = waiting
        self.head_due = head_due
        """When the meeting's oldest waiting message is tried again, if it waits for a retry."""


class OutboxStore(StoreBase):
    # inbox and outbox -------------------------------------------------------------------------------

    async def inbox_answer(self, channel: str, provider_id: str) -> tuple[int, dict[str, Any]] | None:
        row = await self._one(
            "SELECT status, answer FROM inbox WHERE channel=? AND provider_id=?", (channel, provider_id)
        )
        return (int(row["status"]), json.loads(row["answer"])) if row else None

    async def prune_inbox(self, before: datetime) -> int:
        """Forget the provider ids recorded before `before`: a repeat after that is taken as new. How many went."""
        async with self.transaction() as db:
            async with db.execute("DELETE FROM inbox WHERE received_at < ?", (_ts(before),)) as cur:
                return cur.rowcount

    async def record_inbound(
        self,
        channel: str,
        provider_id: str,
        status: int,
        answer: dict[str, Any],
        delivery: NewDelivery | None,
        *,
        max_meeting: int | None = None,
        max_user: int | None = None,
    ) -> tuple[int, dict[str, Any], bool]:
        """Store the provider id, its answer and the outbox row together; a repeated id gets the first answer.

        With limits, raise BacklogFull (storing nothing) when the delivery's meeting or user already has that many
        inbound messages waiting. Counted inside the write transaction, so concurrent requests cannot overshoot."""
        async with self.transaction() as db:
            async with db.execute(
                "SELECT status, answer FROM inbox WHERE channel=? AND provider_id=?", (channel, provider_id)
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                return int(row["status"]), json.loads(row["answer"]), False
            if delivery is not None:
                await self._check_backlog(db, delivery, max_meeting, max_user)
            await db.execute(
                "INSERT INTO inbox (channel, provider_id, status, answer, received_at) VALUES (?,?,?,?,?)",
                (channel, provider_id, status, json.dumps(answer), _ts(utcnow())),
            )
            if delivery is not None:
                await self._insert_deliveries(db, [delivery])
        return status, answer, True

    @staticmethod
    async def _check_backlog(
        db: aiosqlite.Connection, delivery: NewDelivery, max_meeting: int | None, max_user: int | None
    ) -> None:
        waiting = "direction=? AND state IN ('pending','held')"
        for scope, column, key, limit in (
            ("meeting", "meeting_id", delivery.meeting_id, max_meeting),
            ("user", "user_id", delivery.user_id, max_user),
        ):
            if limit is None:
                continue
            async with db.execute(
                f"SELECT COUNT(*) FROM outbox WHERE {column}=? AND {waiting}", (key, delivery.direction.value)
            ) as cur:
                row = await cur.fetchone()
            count = int(row[0]) if row else 0
            if count < limit:
                continue
            async with db.execute(
                "SELECT next_attempt_at FROM outbox WHERE meeting_id=? AND direction=? AND state='pending' "
                "ORDER BY seq LIMIT 1",
                (delivery.meeting_id, delivery.direction.value),
            ) as cur:
                head = await cur.fetchone()
            raise BacklogFull(scope, count, _dt(head[0]) if head else None)

    async def add_notice_once(self, notice: NewDelivery) -> bool:
        """Queue a notice unless one of its state went to the user since their last inbound message was accepted:
        it tells of an episode (the meeting is busy) that only a message of theirs getting through ends."""
        async with self.transaction() as db:
            async with db.execute(
                """SELECT
                     (SELECT MAX(seq) FROM outbox WHERE user_id=?1 AND direction=?2 AND kind='notice'
                        AND json_extract(body, '$.state')=?3),
                     (SELECT MAX(seq) FROM outbox WHERE user_id=?1 AND direction=?4)""",
                (notice.user_id, Direction.OUTBOUND.value, notice.body.get("state"), Direction.INBOUND.value),
            ) as cur:
                row = await cur.fetchone()
            told, accepted = (row[0], row[1]) if row else (None, None)
            if told is not None and told > (accepted or 0):
                return False
            await self._insert_deliveries(db, [notice])
        return True

    async def outbound_backlog(self, user_id: str) -> int:
        """Outbound deliveries waiting for the user, the backlog notice aside."""
        row = await self._one(
            f"SELECT COUNT(*) FROM outbox WHERE {_WAITING_FOR_USER} AND NOT {_IS_BACKLOG_NOTICE}", (user_id,)
        )
        return int(row[0]) if row else 0

    async def trim_outbound(self, user_id: str, keep: int) -> list[Delivery]:
        """Fail, with reason backlog_full, the user's waiting outbound deliveries after the oldest `keep` (the
        backlog notice aside); returns those failed."""
        async with self.transaction() as db:
            async with db.execute(
                f"""SELECT * FROM outbox WHERE {_WAITING_FOR_USER} AND NOT {_IS_BACKLOG_NOTICE}
                    ORDER BY seq LIMIT -1 OFFSET ?""",
                (user_id, keep),
            ) as cur:
                rows = [self._delivery(r) for r in await cur.fetchall()]
            await db.executemany(
                "UPDATE outbox SET state=?, last_error=?, updated_at=? WHERE id=?",
                [(DeliveryState.FAILED.value, BACKLOG_NOTICE, _ts(utcnow()), r.id) for r in rows],
            )
        return rows

    async def backlog_notice_waiting(self, user_id: str) -> bool:
        sql = f"SELECT 1 FROM outbox WHERE {_WAITING_FOR_USER} AND {_IS_BACKLOG_NOTICE} LIMIT 1"
        row = await self._one(sql, (user_id,))
        return row is not None

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
            first_attempt_at=_dt(row["first_attempt_at"]),
            report=row["report"],
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
                "UPDATE outbox SET attempts=attempts+1, first_attempt_at=COALESCE(first_attempt_at, ?), updated_at=? "
                "WHERE id=?",
                [(_ts(utcnow()), _ts(utcnow()), i) for i in ids],
            )

    async def uncount_attempt(self, ids: list[str]) -> None:
        """Take back mark_attempt for a try the provider throttled before doing anything: it is not a failure."""
        async with self.transaction() as db:
            await db.executemany(
                "UPDATE outbox SET attempts=MAX(attempts-1, 0), updated_at=? WHERE id=?",
                [(_ts(utcnow()), i) for i in ids],
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
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> list[Delivery]:
        """Deliveries matching every filter given; since/until bound when they were created (until exclusive)."""
        sql = "SELECT * FROM outbox WHERE 1=1"
        args: list[Any] = []
        for column, value in (
            ("meeting_id", meeting_id),
            ("user_id", user_id),
            ("state", state),
            ("direction", direction),
        ):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(value.value if isinstance(value, DeliveryState | Direction) else value)
        # Stored times are UTC ISO strings of one width, so they compare as text.
        if since is not None:
            sql, args = sql + " AND created_at>=?", [*args, _ts(since)]
        if until is not None:
            sql, args = sql + " AND created_at<?", [*args, _ts(until)]
        order = " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        return [self._delivery(r) for r in await self._all(sql + order + " LIMIT ?", [*args, limit])]

    async def outbox_depth(self) -> dict[str, int]:
        rows = await self._all("SELECT direction, COUNT(*) FROM outbox WHERE state IN ('pending','held') GROUP BY 1")
        return {r[0]: int(r[1]) for r in rows}

    async def record_report(self, remote_id: str, report: str) -> int:
        """The carrier's final word on a sent text, on the deliveries it carried."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE outbox SET report=?, updated_at=? WHERE remote_id=?", (report, _ts(utcnow()), remote_id)
            )
            return cur.rowcount

    async def report_of(self, delivery_id: str) -> str | None:
        row = await self._one("SELECT report FROM outbox WHERE id=?", (delivery_id,))
        return row["report"] if row else None

    async def add_sms_usage(self, user_id: str, segments: int) -> None:
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO sms_usage (user_id, at, segments) VALUES (?,?,?)", (user_id, _ts(utcnow()), segments)
            )

    async def sms_sent_since(self, since: datetime) -> list[datetime]:
        """When each text (each part of a split one) went out from the bridge's number since then, oldest first."""
        rows = await self._all("SELECT at FROM sms_usage WHERE at>=? ORDER BY at", (_ts(since),))
        return [at for row in rows if (at := _dt(row[0])) is not None]

    async def sms_usage(self, user_id: str, since: datetime) -> tuple[int, datetime | None]:
        """Segments sent to the user since then, and when the oldest of them was sent."""
        row = await self._one(
            "SELECT COALESCE(SUM(segments), 0), MIN(at) FROM sms_usage WHERE user_id=? AND at>=?",
            (user_id, _ts(since)),
        )
        return (int(row[0]), _dt(row[1])) if row else (0, None)
