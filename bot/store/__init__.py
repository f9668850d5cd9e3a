"""The bridge's durable state: one Store interface, on SQLite (the default) or PostgreSQL, chosen by store_url."""

from aiohttp import web

from ..store_url import StoreUrl, StoreUrlError, parse_store_url
from .base import NewDelivery, StoreConflictError, StoreUnavailableError, utcnow
from .postgres import PostgresStore
from .sqlite import SqliteStore
from .store import Store

__all__ = [
    "STORE",
    "NewDelivery",
    "PostgresStore",
    "SqliteStore",
    "Store",
    "StoreConflictError",
    "StoreUnavailableError",
    "StoreUrl",
    "StoreUrlError",
    "open_store",
    "parse_store_url",
    "store_for",
    "utcnow",
]

STORE: web.AppKey[Store] = web.AppKey("store")


def store_for(url: StoreUrl) -> Store:
    """The backend the URL names, constructed (no I/O): `await store.open()` connects and migrates."""
    if url.backend == "postgresql":
        return PostgresStore(url)
    assert url.path is not None
    return SqliteStore(url.path)


async def open_store(url: StoreUrl) -> Store:
    return await store_for(url).open()
