"""ACS identities and their chat+voip access tokens, through the async identity SDK."""

from __future__ import annotations

import logging
import ssl
from datetime import UTC, datetime, timedelta
from types import TracebackType

import aiohttp
from azure.communication.identity import CommunicationUserIdentifier
from azure.communication.identity.aio import CommunicationIdentityClient
from azure.core.pipeline.transport import AioHttpTransport

from bot.errors import AuthError, NotFoundError

from .auth import AcsAuth
from .errors import azure_errors

log = logging.getLogger(__name__)

SCOPES = ("chat", "voip")
DEFAULT_TOKEN_LIFETIME = timedelta(hours=24)
# What ACS accepts for expiresInMinutes.
MIN_TOKEN_LIFETIME = timedelta(hours=1)
MAX_TOKEN_LIFETIME = timedelta(hours=24)


def epoch_seconds(value: object) -> int:
    """An expiry as whole seconds since the epoch, from an int/float, a datetime, or an ISO 8601 string.

    The identity SDK hands expires_on back as the service's ISO string, while CommunicationTokenCredential
    compares it with an int: a string there fails only when the token is first refreshed.
    """
    if isinstance(value, bool):
        raise TypeError("an expiry cannot be a bool")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError as exc:
            raise ValueError(f"expiry {value!r} is not an ISO 8601 time") from exc
    elif isinstance(value, datetime):
        when = value
    else:
        raise TypeError(f"cannot read an expiry from {type(value).__name__}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


class SharedTlsTransport(AioHttpTransport):  # type: ignore[misc]  # azure-core's transports are untyped
    """azure-core's aiohttp transport whose own session holds one SSL context for every request.

    Handed a CA path as connection_verify, azure-core builds a new SSL context per request, and aiohttp pools
    connections by context: each request then opens a TLS connection of its own (with a quarter of a megabyte of
    buffers) that lingers in the pool, and a burst of joins leaves hundreds of them behind.
    """

    def __init__(self, verify: str | bool) -> None:
        super().__init__()
        self._tls: ssl.SSLContext | bool = False
        if verify is not False:
            self._tls = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)

    async def open(self) -> None:
        if self.session is None:  # type: ignore[has-type]
            # Like azure-core's own session: no cookies, and the SDK decompresses bodies itself.
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._tls),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        await super().open()


class IdentityService:
    """Creates ACS identities, issues their tokens and deletes them; one SDK client for the process."""

    def __init__(
        self,
        auth: AcsAuth | str,
        *,
        connection_verify: str | bool = True,
        token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """`auth` is how to sign in (a connection string reads as its access key); `session`, when given, is used and
        left open, otherwise the SDK opens its own. The caller owns `auth`'s credential."""
        if not MIN_TOKEN_LIFETIME <= token_lifetime <= MAX_TOKEN_LIFETIME:
            raise ValueError("token_lifetime must be between 1 and 24 hours")
        self.token_lifetime = token_lifetime
        transport: AioHttpTransport = (
            AioHttpTransport(session=session, session_owner=False)
            if session is not None
            else SharedTlsTransport(connection_verify)
        )
        if isinstance(auth, str):
            auth = AcsAuth.from_connection_string(auth)
        self._client = CommunicationIdentityClient(auth.sdk_endpoint, auth.signer, transport=transport)

    async def create_identity(self) -> str:
        """A new ACS identity; returns its raw id (8:acs:...)."""
        with azure_errors("create ACS identity", forbidden=AuthError):
            user = await self._client.create_user()
        raw_id: str = user.raw_id
        log.debug("created ACS identity %s", raw_id)
        return raw_id

    async def issue_token(self, identity_id: str) -> tuple[str, int]:
        """A fresh token with scopes chat and voip: (token, expires_on as an int epoch)."""
        with azure_errors("issue ACS token", forbidden=AuthError):
            token = await self._client.get_token(
                CommunicationUserIdentifier(identity_id), list(SCOPES), token_expires_in=self.token_lifetime
            )
        return str(token.token), epoch_seconds(token.expires_on)

    async def delete_identity(self, identity_id: str) -> None:
        """Delete the identity and revoke its tokens; deleting one that is already gone succeeds."""
        try:
            with azure_errors("delete ACS identity", forbidden=AuthError):
                await self._client.delete_user(CommunicationUserIdentifier(identity_id))
        except NotFoundError:
            log.debug("ACS identity %s was already gone", identity_id)

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> IdentityService:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
