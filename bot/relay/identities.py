"""ACS identities for external users and relay-mode meetings: created once, kept in the store, tokens cached."""

from __future__ import annotations

import asyncio
import logging
import time

from ..errors import NotFoundError, PermanentError
from ..models import ExternalUser, Meeting
from ..store import Store
from .ports import IdentityApi

log = logging.getLogger(__name__)
TOKEN_MARGIN_S = 600


class IdentityBroker:
    def __init__(self, store: Store, api: IdentityApi) -> None:
        self._store = store
        self._api = api
        self._tokens: dict[str, tuple[str, int]] = {}
        self._ours: set[str] = set()
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        self._ours = await self._store.identities()

    def ours(self, raw_id: str | None) -> bool:
        return raw_id is not None and raw_id in self._ours

    async def for_user(self, user: ExternalUser) -> str:
        async with self._lock:
            fresh = await self._store.get_user(user.id)
            if fresh is not None and fresh.identity_id:
                return fresh.identity_id
            identity = await self._api.create_identity()
            self._ours.add(identity)
            await self._store.update_user(user.id, identity_id=identity)
            log.info("created ACS identity for a %s user", user.channel)
            return identity

    async def for_meeting(self, meeting: Meeting) -> str:
        async with self._lock:
            fresh = await self._store.get_meeting(meeting.id)
            if fresh is not None and fresh.relay_identity:
                return fresh.relay_identity
            identity = await self._api.create_identity()
            self._ours.add(identity)
            await self._store.update_meeting(meeting.id, relay_identity=identity)
            log.info("created the shared identity of meeting %s", meeting.id)
            return identity

    async def token(self, identity_id: str) -> str:
        cached = self._tokens.get(identity_id)
        if cached is not None and cached[1] - time.time() > TOKEN_MARGIN_S:
            return cached[0]
        try:
            token, expires_on = await self._api.issue_token(identity_id)
        except NotFoundError as exc:
            # Deleted outside the bridge: let the next join create a new one instead of failing forever.
            await self._store.drop_identity(identity_id)
            raise PermanentError("the ACS identity no longer exists; join again") from exc
        self._tokens[identity_id] = (token, expires_on)
        return token

    def forget_token(self, identity_id: str) -> None:
        """The service refused the cached token: the next ``token`` call issues a new one."""
        self._tokens.pop(identity_id, None)

    async def delete(self, identity_id: str) -> None:
        self._tokens.pop(identity_id, None)
        await self._api.delete_identity(identity_id)
        # Keep it in _ours: its old messages may still be read back from threads and must not be echoed.
