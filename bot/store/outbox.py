"""The inbox of provider ids and the outbox of deliveries in both directions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..models import Delivery, DeliveryState, Direction
from .base import NewDelivery, Row, StoreBase, Tx, _dt, _ts, utcnow

# A notice's body names what it is about in "state"; this one stands for a whole episode and is never trimmed.
BACKLOG_NOTICE = "backlog_full"


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
        row = await self._one(self.sql.inbox_answer, (channel, provider_id))
        return (int(row["status"]), json.loads(row["answer"])) if row else None

    async def prune_inbox(self, before: datetime) -> int:
        """Forget the provider ids recorded before `before`: a repeat after that is taken as new. How many went."""
        async with self.one_statement() as tx:
            return await tx.run(self.sql.prune_inbox, (_ts(before),))

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
        inbound messages waiting. Counted inside the write transaction, after its meeting and user are serialized,
        so concurrent requests cannot overshoot."""
        async with self.transaction() as tx:
            if delivery is not None and (max_meeting is not None or max_user is not None):
                await self._serialize(tx, f"meeting:{delivery.meeting_id}", f"user:{delivery.user_id}")
            # The id first: of concurrent repeats one inserts it, and the others (waiting on its row) see its answer.
            now = _ts(utcnow())
            if not await tx.run(self.sql.insert_inbox, (channel, provider_id, status, json.dumps(answer), now)):
                row = await tx.one(self.sql.inbox_answer, (channel, provider_id))
                assert row is not None
                return int(row["status"]), json.loads(row["answer"]), False
            if delivery is not None:
                # Raised, the transaction rolls back: the id is not kept, so the sender's retry is a new try.
                await self._check_backlog(tx, delivery, max_meeting, max_user)
                await self._insert_deliveries(tx, [delivery])
        return status, answer, True

    async def _check_backlog(
        self, tx: Tx, delivery: NewDelivery, max_meeting: int | None, max_user: int | None
    ) -> None:
        row = await tx.one(self.sql.waiting, (delivery.meeting_id, delivery.user_id, delivery.direction.value))
        counts = (int(row[0]), int(row[1])) if row else (0, 0)
        for scope, count, limit in (("meeting", counts[0], max_meeting), ("user", counts[1], max_user)):
            if limit is None or count < limit:
                continue
            head = await tx.one(self.sql.meeting_head_due, (delivery.meeting_id, delivery.direction.value))
            raise BacklogFull(scope, count, _dt(head[0]) if head else None)

    async def add_notice_once(self, notice: NewDelivery) -> bool:
        """Queue a notice unless one of its state went to the user since their last inbound message was accepted:
        it tells of an episode (the meeting is busy) that only a message of theirs getting through ends."""
        async with self.transaction() as tx:
            await self._serialize(tx, f"user:{notice.user_id}")
            row = await tx.one(
                self.sql.notice_told_and_accepted,
                (notice.user_id, Direction.OUTBOUND.value, notice.body.get("state"), Direction.INBOUND.value),
            )
            told, accepted = (row[0], row[1]) if row else (None, None)
            if told is not None and told > (accepted or 0):
                return False
            await self._insert_deliveries(tx, [notice])
        return True

    async def outbound_backlog(self, user_id: str) -> int:
        """Outbound deliveries waiting for the user, the backlog notice aside."""
        row = await self._one(self.sql.outbound_backlog, (user_id, BACKLOG_NOTICE))
        return int(row[0]) if row else 0

    async def trim_outbound(self, user_id: str, keep: int) -> list[Delivery]:
        """Fail, with reason backlog_full, the user's waiting outbound deliveries after the oldest `keep` (the
        backlog notice aside); returns those failed."""
        async with self.transaction() as tx:
            await self._serialize(tx, f"user:{user_id}")
            rows = [self._delivery(r) for r in await tx.all(self.sql.waiting_after, (user_id, BACKLOG_NOTICE, keep))]
            now = _ts(utcnow())
            await tx.run_many(
                self.sql.fail_delivery, [(DeliveryState.FAILED.value, BACKLOG_NOTICE, now, r.id) for r in rows]
            )
        return rows

    async def backlog_notice_waiting(self, user_id: str) -> bool:
        return await self._one(self.sql.backlog_notice_waiting, (user_id, BACKLOG_NOTICE)) is not None

    async def add_deliveries(self, items: Iterable[NewDelivery]) -> None:
        async with self.one_statement() as tx:
            await self._insert_deliveries(tx, items)

    async def record_outbound(
        self, meeting_id: str, message_id: str, version: str, items: Iterable[NewDelivery], cursor: str | None = None
    ) -> bool:
        """Fan a thread message out once, advancing the meeting's cursor with it; False if already seen."""
        async with self.transaction() as tx:
            if cursor is not None:
                await tx.run(self.sql.set_cursor, (cursor, meeting_id))
            if not await tx.run(self.sql.insert_seen, (meeting_id, message_id, version)):
                return False
            await self._insert_deliveries(tx, items)
        return True

    @staticmethod
    def _delivery(row: Row) -> Delivery:
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
        row = await self._one(self.sql.get_delivery, (delivery_id,))
        return self._delivery(row) if row else None

    async def pending(self, direction: Direction, key_column: str, key: str, limit: int = 50) -> list[Delivery]:
        """Pending rows of one meeting (inbound) or one user (outbound), oldest first."""
        if key_column not in ("meeting_id", "user_id"):
            raise ValueError(key_column)
        rows = await self._all(self.sql.pending(key_column), (direction.value, key, limit))
        return [self._delivery(r) for r in rows]

    async def pending_keys(self, direction: Direction, key_column: str) -> list[str]:
        if key_column not in ("meeting_id", "user_id"):
            raise ValueError(key_column)
        return [r[0] for r in await self._all(self.sql.pending_keys(key_column), (direction.value,))]

    async def mark_attempt(self, ids: list[str]) -> None:
        now = _ts(utcnow())
        async with self.one_statement() as tx:
            await tx.run_many(self.sql.mark_attempt, [(now, now, i) for i in ids])

    async def uncount_attempt(self, ids: list[str]) -> None:
        """Take back mark_attempt for a try the provider throttled before doing anything: it is not a failure."""
        now = _ts(utcnow())
        async with self.one_statement() as tx:
            await tx.run_many(self.sql.uncount_attempt, [(now, i) for i in ids])

    async def finish(
        self,
        ids: list[str],
        state: DeliveryState,
        *,
        remote_id: str | None = None,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        now, due = _ts(utcnow()), _ts(next_attempt_at)
        async with self.one_statement() as tx:
            await tx.run_many(self.sql.finish, [(state.value, remote_id, error, due, now, i) for i in ids])

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
        columns: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("meeting_id", meeting_id),
            ("user_id", user_id),
            ("state", state),
            ("direction", direction),
        ):
            if value is not None:
                columns.append(column)
                args.append(value.value if isinstance(value, DeliveryState | Direction) else value)
        args += [_ts(t) for t in (since, until) if t is not None]
        sql = self.sql.deliveries(tuple(columns), since is not None, until is not None, newest_first)
        return [self._delivery(r) for r in await self._all(sql, [*args, limit])]

    async def outbox_depth(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in await self._all(self.sql.outbox_depth)}

    async def record_report(self, remote_id: str, report: str) -> int:
        """The carrier's final word on a sent text, on the deliveries it carried."""
        async with self.one_statement() as tx:
            return await tx.run(self.sql.record_report, (report, _ts(utcnow()), remote_id))

    async def report_of(self, delivery_id: str) -> str | None:
        row = await self._one(self.sql.report_of, (delivery_id,))
        return row["report"] if row else None

    async def add_sms_usage(self, user_id: str, segments: int) -> None:
        async with self.one_statement() as tx:
            await tx.run(self.sql.add_sms_usage, (user_id, _ts(utcnow()), segments))

    async def sms_sent_since(self, since: datetime) -> list[datetime]:
        """When each text (each part of a split one) went out from the bridge's number since then, oldest first."""
        rows = await self._all(self.sql.sms_sent_since, (_ts(since),))
        return [at for row in rows if (at := _dt(row[0])) is not None]

    async def sms_usage(self, user_id: str, since: datetime) -> tuple[int, datetime | None]:
        """Segments sent to the user since then, and when the oldest of them was sent."""
        row = await self._one(self.sql.sms_usage, (user_id, _ts(since)))
        return (int(row[0]), _dt(row[1])) if row else (0, None)
