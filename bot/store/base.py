"""The store's port: what a backend provides (open, transactions, statements), and the row helpers both share."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, Self

from ..errors import BridgeError
from ..models import DeliveryState, Direction
from .statements import Statements

# Spelled as the partial index one_active_session spells it (migration 1): SQLite uses a partial index only for a
# query whose condition matches the index's own.
ACTIVE_SQL = "('requested', 'joining', 'lobby', 'in_call')"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime | None) -> str | None:
    """Every timestamp goes into the store as one text form, on both backends: UTC ISO 8601 with microseconds (the
    PostgreSQL backend exchanges its timestamptz columns as text, so the Python side is the same)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class StoreConflictError(BridgeError):
    """A write broke a uniqueness rule (a join code taken, a second active session): the row that holds it stays."""


class StoreUnavailableError(BridgeError):
    """The database cannot be reached now (restarting, down, out of connections). Nothing was stored; the caller
    answers 503 or tries again once `Store.available()` returns. Never a TransientError: that would read as a
    failed send to a peer and count against the delivery."""


class Row(Protocol):
    """A result row, by column name or position (sqlite3.Row and asyncpg.Record both are)."""

    def __getitem__(self, key: int | str, /) -> Any: ...


class Tx(Protocol):
    """Statements inside one transaction (or, for the reads outside one, on whatever connection is free)."""

    async def one(self, sql: str, args: Sequence[Any] = ()) -> Row | None: ...

    async def all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    async def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Runs a change; how many rows it touched."""
        ...

    async def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


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


class StoreBase:
    """The contract a backend fulfils; the domain methods above it (directory, sessions, outbox) are shared.

    Constructed without I/O, then opened (``await store.open()``): the wiring builds every object first and opens
    each resource in its own cleanup context. `open` brings the schema up to this version's numbered migrations and
    raises SchemaTooNewError for a database a newer bridge wrote, leaving it untouched.

    `transaction()` is all-or-nothing: the body's statements commit together or not at all, and an exception in the
    body (a cancellation too) rolls back and propagates. A backend must keep what the domain methods rely on:
    a uniqueness rule holds across concurrent transactions (a repeat sees StoreConflictError or the row that won),
    and the keys `_serialize` names (a meeting's, a user's) stay locked until commit, so a count taken after it
    bounds what the transaction inserts. SQLite has one writer at a time, so its serialize statement is none;
    PostgreSQL takes transaction-scoped advisory locks. Isolation is READ COMMITTED or stronger.

    Errors: StoreConflictError for a broken uniqueness rule, StoreUnavailableError while the database cannot be
    reached; anything else is a bug and propagates as it is.
    """

    sql: Statements

    async def open(self) -> Self:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        raise NotImplementedError

    def one_statement(self) -> AbstractAsyncContextManager[Tx]:
        """For a change that is one statement (one run, or one run_many): atomic by itself, so PostgreSQL runs it
        without BEGIN and COMMIT, two round trips of the three such a change would take otherwise; on SQLite it is
        a transaction like any other."""
        raise NotImplementedError

    async def writable(self) -> bool:
        """Whether a write would be taken now (readiness)."""
        raise NotImplementedError

    async def available(self) -> None:
        """Returns once the database can be reached (at once when it can): background work waits here in an
        outage instead of failing in a loop."""
        raise NotImplementedError

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

    async def _serialize(self, tx: Tx, *keys: str) -> None:
        """Lock `keys` (meeting:<id>, user:<id>) until the transaction ends, in the order given: a meeting's before
        its user's, always, so two transactions never wait for each other in a circle."""
        if self.sql.serialize is not None:
            await tx.run(self.sql.serialize, (list(keys),))

    async def _insert_deliveries(self, tx: Tx, items: Iterable[NewDelivery]) -> None:
        now = _ts(utcnow())
        rows = [
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
        ]
        if rows:
            await tx.run_many(self.sql.insert_delivery, rows)

    async def _update(self, table: str, allowed: set[str], key: str, fields: dict[str, Any]) -> None:
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update {table} fields {sorted(set(fields) - allowed)}")
        async with self.one_statement() as tx:
            await tx.run(self.sql.update(table, tuple(fields)), (*fields.values(), key))
