"""Chat in meeting threads as many ACS identities at once, over one shared HTTP session, with our errors."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, Protocol

import aiohttp
from azure.communication.chat import ChatMessage
from azure.communication.chat.aio import ChatThreadClient, CommunicationTokenCredential
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import AioHttpTransport

from bot.errors import PermanentError
from bot.models import ChatMessageView

from .chat_reads import ThreadReads
from .errors import azure_errors

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 200


class TokenIssuer(Protocol):
    """What ChatService needs from IdentityService."""

    async def issue_token(self, identity_id: str) -> tuple[str, int]: ...


def _view(message: ChatMessage) -> ChatMessageView:
    content = message.content
    text = (content.message or content.topic or "") if content is not None else ""
    sender = message.sender.raw_id if message.sender is not None else None
    return ChatMessageView(
        id=str(message.id),
        type=str(getattr(message.type, "value", message.type)),
        sequence_id=int(message.sequence_id),
        created_on=message.created_on,
        content=str(text),
        sender_id=sender,
        sender_display_name=message.sender_display_name,
        edited_on=message.edited_on,
        deleted_on=message.deleted_on,
        metadata=dict(message.metadata or {}),
        version=str(message.version or ""),
    )


class ChatService:
    """Per-identity chat thread clients sharing one aiohttp session, one refreshing credential per identity.

    SDK retries are off for every call: retrying happens in one place (the outbox), which looks for a
    message by its metadata before sending it again, so a lost answer never posts a message twice.
    """

    def __init__(
        self,
        endpoint: str,
        identity_service: TokenIssuer,
        *,
        connection_verify: str | bool = True,
        session: aiohttp.ClientSession | None = None,
        max_connections: int = 100,
        connection_timeout: float = 10.0,
        read_timeout: float = 30.0,
    ) -> None:
        """`session`, when given, is shared and left open (its connector decides TLS trust); otherwise
        ChatService opens one on first use, trusting `connection_verify` (a CA file path, True or False)."""
        self.endpoint = endpoint
        self._identities = identity_service
        self._verify = connection_verify
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._timeouts = {"connection_timeout": connection_timeout, "read_timeout": read_timeout}
        self._credentials: dict[str, CommunicationTokenCredential] = {}
        self._credential_locks: dict[str, asyncio.Lock] = {}
        self._clients: dict[tuple[str, str], ChatThreadClient] = {}
        self._reads: ThreadReads | None = None
        self._closed = False

    @property
    def session(self) -> aiohttp.ClientSession:
        """The one HTTP session every thread client sends through."""
        if self._session is None:
            if self._verify is True:
                tls: ssl.SSLContext | bool = ssl.create_default_context()
            elif self._verify is False:
                tls = False
            else:
                tls = ssl.create_default_context(cafile=self._verify)
            # One SSL context for the connector: a CA path handed to azure-core would build a context per request
            # and defeat connection reuse.
            connector = aiohttp.TCPConnector(ssl=tls, limit=self._max_connections)
            # Like azure-core's own session: no cookies, and the SDK decompresses bodies itself.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
            )
        return self._session

    async def refresh_token(self, identity_id: str) -> AccessToken:
        """The token refresher for one identity's credential: a fresh token with an int expires_on."""
        try:
            token, expires_on = await self._identities.issue_token(identity_id)
        except Exception:
            log.warning("could not refresh the ACS token of %s", identity_id, exc_info=True)
            raise
        return AccessToken(token, int(expires_on))

    async def _credential(self, identity_id: str) -> CommunicationTokenCredential:
        credential = self._credentials.get(identity_id)
        if credential is not None:
            return credential
        # Concurrent first sends as one identity must not each issue a token.
        async with self._credential_locks.setdefault(identity_id, asyncio.Lock()):
            credential = self._credentials.get(identity_id)
            if credential is None:
                first = await self.refresh_token(identity_id)
                credential = CommunicationTokenCredential(
                    first.token, token_refresher=partial(self.refresh_token, identity_id), proactive_refresh=True
                )
                await credential.__aenter__()  # type: ignore[no-untyped-call]  # starts the proactive refresh timer
                self._credentials[identity_id] = credential
        return credential

    async def thread_client(self, identity_id: str, thread_id: str) -> ChatThreadClient:
        """The cached client for one identity in one thread."""
        if self._closed:
            raise RuntimeError("ChatService is closed")
        client = self._clients.get((identity_id, thread_id))
        if client is None:
            credential = await self._credential(identity_id)
            client = self._clients.get((identity_id, thread_id))
            if client is None:
                transport = AioHttpTransport(session=self.session, session_owner=False)
                client = ChatThreadClient(
                    self.endpoint, credential, thread_id, transport=transport, retry_total=0, **self._timeouts
                )
                self._clients[(identity_id, thread_id)] = client
        return client

    async def send(
        self,
        identity_id: str,
        thread_id: str,
        content: str,
        *,
        display_name: str | None = None,
        html: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Post one message as the identity; returns the ACS message id."""
        if not content:
            raise PermanentError("send chat message: the message is empty")
        client = await self.thread_client(identity_id, thread_id)
        options: dict[str, Any] = {"metadata": dict(metadata)} if metadata else {}
        with azure_errors("send chat message"):
            result = await client.send_message(
                content, chat_message_type="html" if html else "text", sender_display_name=display_name, **options
            )
        return str(result.id)

    async def _listing(
        self, identity_id: str, thread_id: str, start_time: datetime | None, page_size: int
    ) -> AsyncIterator[ChatMessage]:
        """The service's listing, newest first; iterate it inside azure_errors."""
        if self._closed:
            raise RuntimeError("ChatService is closed")
        if self._reads is None:
            transport = AioHttpTransport(session=self.session, session_owner=False)
            self._reads = ThreadReads(self.endpoint, transport, **self._timeouts)
        credential = await self._credential(identity_id)
        size = max(1, min(page_size, MAX_PAGE_SIZE))
        return self._reads.messages(identity_id, credential, thread_id, start_time, size)

    async def find_by_metadata(
        self, identity_id: str, thread_id: str, key: str, value: str, since: datetime | None
    ) -> str | None:
        """The id of the identity's own message whose metadata[key] == value, sent at or after `since`."""
        with azure_errors("look for a sent chat message"):
            async for message in await self._listing(identity_id, thread_id, since, MAX_PAGE_SIZE):
                sender = message.sender.raw_id if message.sender is not None else None
                if sender == identity_id and (message.metadata or {}).get(key) == value:
                    return str(message.id)
        return None

    async def list_since(
        self, identity_id: str, thread_id: str, start_time: datetime | None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> list[ChatMessageView]:
        """Every message the identity can see from `start_time` on, oldest first."""
        with azure_errors("list chat messages"):
            views = [_view(m) async for m in await self._listing(identity_id, thread_id, start_time, page_size)]
        views.sort(key=lambda v: v.sequence_id)
        return views

    async def update(
        self,
        identity_id: str,
        thread_id: str,
        message_id: str,
        *,
        content: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Edit one of the identity's messages."""
        client = await self.thread_client(identity_id, thread_id)
        options: dict[str, Any] = {"content": content} if content is not None else {}
        if metadata is not None:
            options["metadata"] = dict(metadata)
        with azure_errors("update chat message"):
            await client.update_message(message_id, **options)

    async def delete(self, identity_id: str, thread_id: str, message_id: str) -> None:
        """Delete one of the identity's messages."""
        client = await self.thread_client(identity_id, thread_id)
        with azure_errors("delete chat message"):
            await client.delete_message(message_id)

    async def forget(self, identity_id: str) -> None:
        """Close the identity's thread clients and credential (it left, or its identity was deleted)."""
        keys = [key for key in self._clients if key[0] == identity_id]
        for key in keys:
            await self._clients.pop(key).close()
        if self._reads is not None:
            self._reads.forget(identity_id)
        credential = self._credentials.pop(identity_id, None)
        self._credential_locks.pop(identity_id, None)
        if credential is not None:
            await credential.close()

    @property
    def identities(self) -> frozenset[str]:
        """Identities that currently hold a credential."""
        return frozenset(self._credentials)

    async def close(self) -> None:
        self._closed = True
        for identity_id in list(self._credentials) + [key[0] for key in self._clients]:
            await self.forget(identity_id)
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> ChatService:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
