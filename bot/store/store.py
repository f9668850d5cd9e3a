"""Store: the bridge's durable state, one interface over either backend (the domain methods are shared)."""

from __future__ import annotations

from .directory import Directory
from .outbox import OutboxStore
from .sessions import SessionStore


class Store(Directory, SessionStore, OutboxStore):
    """Meetings, users, sessions, the inbox of provider ids and the outbox. Backends: SqliteStore, PostgresStore;
    the contract they keep is StoreBase's."""
