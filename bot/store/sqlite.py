"""The store on SQLite (aiosqlite, WAL): meetings, users, sessions, the inbox of provider ids and the outbox."""

from __future__ import annotations

from .base import NewDelivery, utcnow
from .consent import ConsentStore
from .directory import Directory
from .outbox import OutboxStore
from .sessions import SessionStore

__all__ = ["NewDelivery", "Store", "utcnow"]


class Store(Directory, SessionStore, OutboxStore, ConsentStore):
    """One connection, one writer at a time; every multi-row change is one transaction."""
