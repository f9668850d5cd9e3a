"""The consent ledger: every opt-in and opt-out of a phone number, kept by keyed hash, its standing, its retention."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

from aiohttp import web

from ..consent import ConsentEntry, ConsentRecord, Standing, load_key, number_hash, number_tail, standing
from ..phones import mask
from ..store import Store, utcnow

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0
"""Retention is counted in days: the sweep runs every half minute, a prune once an hour is plenty."""


class ConsentLedger:
    """Records outlive the user: `forget` deletes the user and their messages, never these rows (an audit asks for
    proof of consent after the person is gone, and an opt-out must stay honoured)."""

    def __init__(
        self,
        store: Store,
        retention_days: int,
        *,
        key: bytes | None = None,
        configured_key: str | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """`key` as it is, or, at `open`, the configured one or the one in state_dir (created there at first)."""
        self._store = store
        self._key = key
        self._configured_key = configured_key
        self._state_dir = state_dir
        self._retention = timedelta(days=retention_days)
        self._pruned_at: float | None = None

    async def open(self) -> None:
        if self._key is None:
            assert self._configured_key is not None or self._state_dir is not None
            self._key = load_key(self._configured_key, self._state_dir or Path("."))

    def hash(self, number: str) -> str:
        if self._key is None:
            raise RuntimeError("the consent ledger is not open yet")
        return number_hash(self._key, number)

    async def record(self, number: str, entry: ConsentEntry) -> ConsentRecord:
        record = await self._store.add_consent(self.hash(number), number_tail(number), entry)
        log.info("consent: %s %s by %s", mask(number), entry.event.replace("_", " "), entry.method.replace("_", " "))
        return record

    async def latest(self, number: str) -> ConsentRecord | None:
        return await self._store.latest_consent(self.hash(number))

    async def opted_in(self, number: str) -> bool:
        latest = await self.latest(number)
        return latest is not None and latest.entry.event == "opt_in"

    async def records(self, number: str, limit: int = 1000) -> list[ConsentRecord]:
        return await self._store.consent_records(number_hash=self.hash(number), limit=limit)

    async def standing(self, number: str) -> Standing:
        user = await self._store.get_user(f"sms:{number}")
        return standing(await self.latest(number), user is not None and user.opted_out)

    async def prune(self) -> int:
        """Rows past retention go (each number's newest stays); at most once an hour, however often it is called."""
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_S:
            return 0
        self._pruned_at = now
        pruned = await self._store.prune_consent(utcnow() - self._retention)
        if pruned:
            log.info("consent ledger: %d records past %d days of retention deleted", pruned, self._retention.days)
        return pruned


CONSENT: web.AppKey[ConsentLedger] = web.AppKey("consent", ConsentLedger)
