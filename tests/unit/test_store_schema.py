"""The store's schema on both backends: numbered migrations run once, a newer schema is refused, a failing one rolls
back; and what only SQLite has (WAL, statements on the loop's thread)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from types import ModuleType
from typing import Any

import asyncpg
import pytest

import bot.store.postgres as postgres_backend
import bot.store.sqlite as sqlite_backend
from bot.errors import SchemaTooNewError
from bot.sessions import ACTIVE
from bot.store import PostgresStore, SqliteStore, Store, StoreUrl, store_for
from bot.store.base import ACTIVE_SQL
from bot.store.postgres.migrations import MIGRATIONS as PG_MIGRATIONS
from bot.store.sqlite.migrations import MIGRATIONS
from tests.support.postgres import PostgresServer
from tests.unit.test_store import meeting, scalar, setup


def backend(url: StoreUrl) -> ModuleType:
    return postgres_backend if url.backend == "postgresql" else sqlite_backend


async def version(store: Store) -> int:
    sql = "SELECT version FROM schema_version" if isinstance(store, PostgresStore) else "PRAGMA user_version"
    return int(await scalar(store, sql))


async def set_version(url: StoreUrl, number: int) -> None:
    """Write the schema version behind the store's back, as a newer bridge would have."""
    if url.path is not None:
        with sqlite3.connect(url.path) as db:
            db.execute(f"PRAGMA user_version={number}")
        return
    conn = await asyncpg.connect(
        host=url.host, port=url.port, user=url.user, password=url.password, database=url.database
    )
    try:
        await conn.execute("UPDATE schema_version SET version=$1", number)
    finally:
        await conn.close()


def test_both_backends_have_the_same_numbered_migrations() -> None:
    # A migration added for one backend and not the other would leave their schema numbers meaning different things.
    assert len(PG_MIGRATIONS) == len(MIGRATIONS)


async def test_migrations_run_once_and_the_version_is_kept(
    store_url: StoreUrl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.store")
    first = await store_for(store_url).open()
    try:
        assert await version(first) == len(MIGRATIONS)
        await first.upsert_meeting(meeting())
    finally:
        await first.close()
    assert [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()] == [
        f"store migrated to schema {n}" for n in range(1, len(MIGRATIONS) + 1)
    ]
    caplog.clear()
    again = await store_for(store_url).open()
    try:
        assert await version(again) == len(MIGRATIONS)
        assert [m.id for m in await again.list_meetings()] == ["m-1"]
        assert await again.writable()
    finally:
        await again.close()
    assert not [r for r in caplog.records if "migrated" in r.getMessage()]


async def test_a_new_migration_runs_on_the_next_open_only(store_url: StoreUrl, monkeypatch: pytest.MonkeyPatch) -> None:
    module = backend(store_url)
    await (await store_for(store_url).open()).close()
    extra = "CREATE TABLE extra (x TEXT); INSERT INTO extra VALUES ('a')"
    monkeypatch.setattr(module, "MIGRATIONS", [*module.MIGRATIONS, extra])
    for _ in range(2):  # re-running migration 1 would fail (its tables exist), re-running 2 would insert twice
        st = await store_for(store_url).open()
        try:
            assert await version(st) == len(MIGRATIONS) + 1
            assert await scalar(st, "SELECT COUNT(*) FROM extra") == 1
        finally:
            await st.close()


async def test_a_store_written_by_a_newer_bridge_is_refused_and_left_as_it_is(store_url: StoreUrl) -> None:
    await (await store_for(store_url).open()).close()
    await set_version(store_url, len(MIGRATIONS) + 1)
    with pytest.raises(SchemaTooNewError, match=f"schema {len(MIGRATIONS) + 1}, newer than this bridge's") as raised:
        await store_for(store_url).open()
    assert store_url.password is None or store_url.password not in str(raised.value)
    await set_version(store_url, len(MIGRATIONS))  # as it was: opens again
    await (await store_for(store_url).open()).close()


async def test_a_failing_migration_leaves_the_previous_version(
    store_url: StoreUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = backend(store_url)
    await (await store_for(store_url).open()).close()
    original: list[Any] = module.MIGRATIONS
    monkeypatch.setattr(module, "MIGRATIONS", [*original, "CREATE TABLE half (x int); CREATE TABLE meetings (x int)"])
    with pytest.raises(Exception, match="meetings"):
        await store_for(store_url).open()
    monkeypatch.setattr(module, "MIGRATIONS", original)
    st = await store_for(store_url).open()
    try:
        assert await version(st) == len(MIGRATIONS)
        pg = isinstance(st, PostgresStore)
        table = "to_regclass('half') IS NOT NULL" if pg else "COUNT(*) FROM sqlite_master WHERE name='half'"
        assert not await scalar(st, f"SELECT {table}")
    finally:
        await st.close()


async def test_bridges_opening_one_new_database_at_once_migrate_it_once(postgres: PostgresServer) -> None:
    # Instances started together: the migration lock lets one migrate while the others wait, then find it done.
    url = await postgres.create_database()
    stores = await asyncio.gather(*(store_for(url).open() for _ in range(3)))
    try:
        assert [await version(s) for s in stores] == [len(MIGRATIONS)] * 3
    finally:
        await asyncio.gather(*(s.close() for s in stores))


# SQLite only ------------------------------------------------------------------------------------------------


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Any) -> None:
    st = await SqliteStore(tmp_path / "bridge.db").open()
    try:
        assert str(await scalar(st, "PRAGMA journal_mode")).lower() == "wal"
        assert await scalar(st, "PRAGMA foreign_keys") == 1
    finally:
        await st.close()


async def test_sqlite_statements_run_on_the_event_loops_thread(tmp_path: Any) -> None:
    # The store overrides a private hook of aiosqlite (see InlineConnection): a release that renames or reroutes
    # it would quietly send every statement back through the worker thread. Here the query itself says where
    # it ran.
    st = await SqliteStore(tmp_path / "bridge.db").open()
    try:
        st._db._conn.create_function("thread_id", 0, threading.get_ident)
        assert await scalar(st, "SELECT thread_id()") == threading.get_ident()
    finally:
        await st.close()


async def test_sqlite_active_session_lookups_search_the_partial_index_instead_of_scanning(tmp_path: Any) -> None:
    store = await SqliteStore(tmp_path / "bridge.db").open()
    await setup(store, "webhook:app/ann")
    statements: list[str] = []
    store._db._conn.set_trace_callback(statements.append)
    try:
        await store.active_session("webhook:app/ann", "m-1")
        await store.current_session("webhook:app/ann")
        assert len(statements) == 2
        assert {state.strip(" '") for state in ACTIVE_SQL.strip("()").split(",")} == set(ACTIVE)
        for sql in statements:
            plan = " ".join(str(row[3]) for row in await store._all(f"EXPLAIN QUERY PLAN {sql}"))
            assert "USING INDEX one_active_session" in plan, (sql, plan)
    finally:
        store._db._conn.set_trace_callback(None)
        await store.close()
