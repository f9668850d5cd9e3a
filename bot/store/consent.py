"""SMS compliance in the store: the consent ledger's rows, and what quiet hours ask (when a user last texted)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from ..consent import ConsentEntry, ConsentRecord, Event, Method
from .base import Row, StoreBase, _dt, _ts, utcnow

QUIET_HOLD = "held for quiet hours"
"""How a delivery held by quiet hours reads in last_error: a text from the user releases those, and only those."""
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
    def _record(row: Row) -> ConsentRecord:
        at = _dt(row["at"])
        assert at is not None
        values: dict[str, Any] = {c: row[c] for c in _ENTRY_COLUMNS}
        values["event"], values["method"] = cast(Event, row["event"]), cast(Method, row["method"])
        return ConsentRecord(int(row["id"]), at, row["number_hash"], row["number_tail"], ConsentEntry(**values))

    async def add_consent(self, number_hash: str, number_tail: str, entry: ConsentEntry) -> ConsentRecord:
        values = [getattr(entry, c) for c in _ENTRY_COLUMNS]
        async with self.one_statement() as tx:
            row = await tx.one(self.sql.insert_consent, (_ts(utcnow()), number_hash, number_tail, *values))
        assert row is not None
        return self._record(row)

    async def latest_consent(self, number_hash: str) -> ConsentRecord | None:
        row = await self._one(self.sql.latest_consent, (number_hash,))
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
        columns: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("number_hash", number_hash),
            ("number_tail", number_tail),
            ("event", event),
            ("meeting_id", meeting_id),
        ):
            if value is not None:
                columns.append(column)
                args.append(value)
        args += [_ts(t) for t in (since, until) if t is not None]
        sql = self.sql.consent_records(tuple(columns), since is not None, until is not None, newest_first)
        return [self._record(r) for r in await self._all(sql, [*args, limit])]

    async def prune_consent(self, before: datetime) -> int:
        """Delete rows older than `before`, except each number's newest: it says where the number stands now, and an
        opt-out must be honoured however long ago it was texted."""
        async with self.one_statement() as tx:
            return await tx.run(self.sql.prune_consent, (_ts(before),))

    async def note_text(self, user_id: str) -> int:
        """The user just texted: remember when, and let what quiet hours held for them go now (it is a conversation
        again). How many deliveries were let go."""
        now = _ts(utcnow())
        async with self.transaction() as tx:
            await tx.run(self.sql.note_text, (now, user_id))
            return await tx.run(self.sql.release_quiet, (now, now, user_id, QUIET_HOLD + "%"))

    async def sms_conversation(self, user_id: str) -> tuple[datetime | None, bool]:
        """When the user last texted, and whether they are in (or on their way into) a meeting."""
        row = await self._one(self.sql.sms_conversation, (user_id,))
        return (_dt(row[0]), bool(row[1])) if row else (None, False)
