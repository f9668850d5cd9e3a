"""Store: the bridge's durable state, one interface over either backend (the domain methods are shared)."""

from __future__ import annotations

from .consent import ConsentStore
from .directory import Directory
from .outbox import OutboxStore
from .sessions import SessionStore


class Store(Directory, SessionStore, OutboxStore, ConsentStore):
    """Meetings, users, sessions, the inbox of provider ids, the outbox and the SMS consent ledger. Backends:
    SqliteStore, PostgresStore; the contract they keep is StoreBase's."""
