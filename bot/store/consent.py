"""SMS compliance in the store: the consent ledger's rows, and what quiet hours ask (when a user last texted)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import aiosqlite

from ..consent import ConsentEntry, ConsentRecord, Event, Method
from ..sessions import ACTIVE
from .base import StoreBase, _dt, _ts, utcnow

QUIET_HOLD = "held for quiet hours"
"""How a delivery held by quiet hours reads in last_error: a text from the user releases those, and only those."""
_ACTIVE_SQL = "('" + "','".join(sorted(ACTIVE)) + "')"
_ENTRY_COLUMNS = (
    "event",
    "method",
    "matched",
    "request",
    "gateway",
    "provider_id",
    "program",
    "meeting_id",
    "meeting_name",
    "confirmation",
    "confirmation_id",
)


class ConsentStore(StoreBase):
    @staticmethod
    def _record(row: aiosqlite.Row) -> ConsentRecord:
        at = _dt(row["at"])
        assert at is not None
        values: dict[str, Any] = {c: row[c] for c in _ENTRY_COLUMNS}
        values["event"], values["method"] = cast(Event, row["event"]), cast(Method, row["method"])
        return ConsentRecord(row["id"], at, row["number_hash"], row["number_tail"], ConsentEntry(**values))

    async def add_consent(self, number_hash: str, number_tail: str, entry: ConsentEntry) -> ConsentRecord:
        values = [getattr(entry, c) for c in _ENTRY_COLUMNS]
        async with self.transaction() as db:
            cur = await db.execute(
                f"""INSERT INTO consent (at, number_hash, number_tail, {", ".join(_ENTRY_COLUMNS)})
                    VALUES (?,?,?,{",".join("?" * len(_ENTRY_COLUMNS))})""",
                (_ts(utcnow()), number_hash, number_tail, *values),
            )
            row_id = int(cur.lastrowid or 0)
        row = await self._one("SELECT * FROM consent WHERE id=?", (row_id,))
        assert row is not None
        return self._record(row)

    async def latest_consent(self, number_hash: str) -> ConsentRecord | None:
        row = await self._one("SELECT * FROM consent WHERE number_hash=? ORDER BY id DESC LIMIT 1", (number_hash,))
        return self._record(row) if row else None

    async def consent_records(
        self,
        *,
        number_hash: str | None = None,
        number_tail: str | None = None,
        event: Event | None = None,
        meeting_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        newest_first: bool = True,
    ) -> list[ConsentRecord]:
        """Ledger rows matching every filter given; since/until bound their time (until exclusive)."""
        sql, args = "SELECT * FROM consent WHERE 1=1", list[Any]()
        for column, value in (
            ("number_hash", number_hash),
            ("number_tail", number_tail),
            ("event", event),
            ("meeting_id", meeting_id),
        ):
            if value is not None:
                sql, args = sql + f" AND {column}=?", [*args, value]
        if since is not None:
            sql, args = sql + " AND at>=?", [*args, _ts(since)]
        if until is not None:
            sql, args = sql + " AND at<?", [*args, _ts(until)]
        order = " ORDER BY id DESC" if newest_first else " ORDER BY id"
        return [self._record(r) for r in await self._all(sql + order + " LIMIT ?", [*args, limit])]

    async def prune_consent(self, before: datetime) -> int:
        """Delete rows older than `before`, except each number's newest: it says where the number stands now, and an
        opt-out must be honoured however long ago it was texted."""
        async with self.transaction() as db:
            cur = await db.execute(
                """DELETE FROM consent WHERE at<? AND id NOT IN (SELECT MAX(id) FROM consent GROUP BY number_hash)""",
                (_ts(before),),
            )
            return cur.rowcount

    async def note_text(self, user_id: str) -> int:
        """The user just texted: remember when, and let what quiet hours held for them go now (it is a conversation
        again). How many deliveries were let go."""
        now = _ts(utcnow())
        async with self.transaction() as db:
            await db.execute("UPDATE users SET last_text_at=? WHERE id=?", (now, user_id))
            cur = await db.execute(
                """UPDATE outbox SET next_attempt_at=?, updated_at=? WHERE user_id=? AND direction='out'
                   AND state='pending' AND last_error LIKE ?""",
                (now, now, user_id, QUIET_HOLD + "%"),
            )
            return cur.rowcount

    async def sms_conversation(self, user_id: str) -> tuple[datetime | None, bool]:
        """When the user last texted, and whether they are in (or on their way into) a meeting."""
        row = await self._one(
            f"""SELECT last_text_at, EXISTS(SELECT 1 FROM sessions WHERE user_id=users.id AND state IN {_ACTIVE_SQL})
                FROM users WHERE id=?""",
            (user_id,),
        )
        return (_dt(row[0]), bool(row[1])) if row else (None, False)
