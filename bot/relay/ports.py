"""The relay's ports: what it needs of a channel, the chat and identity APIs and a call connector, as Protocols.

The relay imports no implementation; implementations import these (or merely match them):

- `Channel`: `bot.channels.webhook.WebhookChannel`, `bot.channels.sms.channel.SmsChannel`;
- `ChatApi`: `bot.acs.chat.ChatService`;
- `IdentityApi`: `bot.acs.identity.IdentityService`, and `bot.metrics.CountingTokens` wrapping it;
- `CallConnector`: every connector in `bot.calls` (their full contract is `bot.calls.base.CallConnector`);
- `CallReports`: `bot.calls.client_reported.ClientReportedConnector`, whose legs the users' own apps hold.

Errors are `bot.errors`: `TransientError` (worth retrying; `ThrottledError` when the service asked to wait),
`PermanentError` (retrying will not help), `NotInCallError` (the identity is not in the meeting's call),
`NotFoundError`, `AuthError`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Protocol

from ..models import CallEvent, CallHandle, CallState, ChatMessageView, Delivery, ExternalUser, Meeting, Reported


class Channel(Protocol):
    """Hands deliveries (meeting messages, edits, deletes, notices) to an external user on one transport."""

    name: str
    batch_window_s: float
    """0: one delivery at a time; more: deliveries arriving within this window are handed over together."""

    async def turn(self, user: ExternalUser, meeting: Meeting | None, deliveries: list[Delivery]) -> None:
        """Wait until the provider may take the next try (its send limit, a Retry-After it asked for). Awaited
        before the try is counted, so a crash while waiting costs the deliveries none of their attempts."""
        ...

    async def deliver(self, user: ExternalUser, meeting: Meeting | None, deliveries: list[Delivery]) -> str | None:
        """Hand deliveries (in order, one meeting) to the user; the provider's id for them, if it gives one.
        Raise TransientError to retry them, PermanentError to give up on them. `meeting` is None for replies
        that belong to no meeting."""
        ...


class ChatApi(Protocol):
    """A Teams meeting's chat thread, spoken to as one ACS identity. The relay owns the identities; the API holds
    whatever credential it builds from their tokens until `forget`. A send is not retried inside: the relay looks
    a message up by its metadata before sending it again, so none goes twice."""

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
        """Post one message as the identity; the message id. NotInCallError when the identity is not in the call."""
        ...

    async def find_by_metadata(
        self, identity_id: str, thread_id: str, key: str, value: str, since: datetime | None
    ) -> str | None:
        """The id of the identity's own message whose metadata[key] == value, sent at or after `since`."""
        ...

    async def list_since(
        self, identity_id: str, thread_id: str, start_time: datetime | None, page_size: int = ...
    ) -> list[ChatMessageView]:
        """Every message the identity can see from `start_time` on, oldest first."""
        ...

    async def forget(self, identity_id: str) -> None:
        """Drop what is held for the identity (it left, or was deleted)."""
        ...


class IdentityApi(Protocol):
    """ACS identities: created once per user (or relay-mode meeting) and kept in the store; tokens carry the chat
    and voip scopes. NotFoundError from `issue_token` means the identity was deleted outside the bridge."""

    async def create_identity(self) -> str:
        """A new identity's raw id (8:acs:...)."""
        ...

    async def issue_token(self, identity_id: str) -> tuple[str, int]:
        """A fresh token and its expiry as epoch seconds."""
        ...

    async def delete_identity(self, identity_id: str) -> None:
        """Delete the identity and revoke its tokens; deleting one already gone succeeds."""
        ...


TokenSource = Callable[[], Awaitable[str]]
"""Gives a current ACS access token when one is needed (a leg may outlive its first token)."""


class CallConnector(Protocol):
    """What the relay uses of a call connector: one ACS identity's leg in a Teams meeting's call. `token` is an ACS
    access token with the voip scope, or a callable giving a current one when it is needed. The connector does not
    retry `join`: joining twice would put two legs in the call. A watch ends DROPPED for a leg lost without anyone
    meaning it (join again), FAILED for one that retrying cannot bring back; `StaleTokenError` from `join` or `watch`
    means join again with a newly issued token."""

    async def join(
        self,
        token: str | TokenSource,
        *,
        meeting_link: str | None = None,
        meeting_id: str | None = None,
        passcode: str | None = None,
        display_name: str,
    ) -> CallHandle:
        """Join by join link, or by meeting id and passcode; the handle is in LOBBY or CONNECTED."""
        ...

    async def leave(self, call_id: str, token: str) -> None:
        """Hang up; leaving a finished or unknown call is not an error."""
        ...

    async def get(self, call_id: str, token: str) -> CallHandle:
        """The leg's state now (NotFoundError for a call it does not know): asked to tell a 403 on the meeting's
        chat of a leg that is gone from one of a meeting that refuses its chat."""
        ...

    def watch(self, call_id: str, token: str | TokenSource) -> AsyncGenerator[CallEvent, None]:
        """The leg's current state, then every change, ending after a final state."""
        ...


class CallReports(Protocol):
    """The connector of legs that the users' own apps hold: each app reports its call's changes (the webhook
    channel's ``call`` event), and the connector's ``watch`` yields what it took, so sessions follow a reported call
    exactly as they follow any connector's. Synchronous: taking a report does no I/O."""

    def report(
        self,
        call_id: str,
        state: CallState,
        reason: str | None = None,
        *,
        thread_id: str | None = None,
        client_call: str | None = None,
    ) -> Reported:
        """Take one report on the leg `call_id` (the call id `join` handed out); `client_call` is the app's own id of
        the call it reports on, when it names one. A final leg stays final; a call the app replaced is not heard."""
        ...
