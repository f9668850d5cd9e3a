"""The CallConnector port: joins an ACS identity to a Teams meeting call and reports that call leg's state."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol

from ..errors import PermanentError
from ..models import CallEvent, CallHandle, CallState

TokenSource = Callable[[], Awaitable[str]]
"""Gives a current ACS access token for the identity whose call is watched."""


async def token_of(token: str | TokenSource) -> str:
    return token if isinstance(token, str) else await token()


class CallConnector(Protocol):
    """Puts one ACS identity into a Teams meeting's call and tells the bridge where that call leg stands.

    Being in the call is what lets an ACS identity use the meeting's chat: the identity is added to the chat
    thread when its leg connects and removed when it leaves, is removed by an organizer, or the meeting ends.

    Implementations:

    - the sandbox's call API (``SandboxCallConnector``), for development and tests;
    - a headless browser running the JavaScript Calling SDK (``@azure/communication-calling``,
      ``callAgent.join({meetingLink})`` or ``callAgent.join({meetingId, passcode})``). This is the production
      path: Microsoft offers no server-side way to put an ACS identity into a Teams meeting call (Call
      Automation cannot connect to a Teams meeting, and a Graph calling bot joins as a Teams app, not as an
      ACS identity);
    - ``ClientReportedConnector``, for apps that join the call themselves and report its state to the bridge.

    ACS emits no server-side call events (Event Grid ``CallStarted``, ``CallParticipantAdded``, ...) for
    ACS-Teams interop calls, so whoever holds the call is the only source of its state: ``watch`` is how the
    bridge learns of the lobby, admission, removal and the meeting's end.

    ``token`` is always an ACS user access token with the ``voip`` scope. The bridge owns identities and
    tokens; a connector only uses the token it is handed on each call. ``join`` and ``watch`` may be handed a
    ``TokenSource`` instead, called only when a token is needed: a leg may outlive its first token (the browser
    connector's page asks for a fresh one as the old one nears its expiry), and a watch that learns of its call by
    other means (the resource-wide stream) needs none, so taking up thousands of legs after a restart issues no
    tokens for them. A connector never writes a token anywhere: not to disk, a URL or a log.

    Errors come from ``bot.errors``: ``AuthError`` (token refused), ``NotFoundError`` (unknown call),
    ``PermanentError`` (wrong passcode, missing scope, meeting ended...), ``TransientError`` (the service is
    unreachable or failing; worth retrying later), ``StaleTokenError`` (a TransientError: join again with a newly
    issued token; ``watch`` may raise it too). Connectors do not retry ``join`` themselves: joining twice would put
    two legs in the call.

    ``watch`` ends with ``CallState.DROPPED`` for a leg lost without anyone meaning it (the caller joins again),
    and with ``FAILED`` for one that retrying cannot bring back (the event's reason says why).
    """

    async def join(
        self,
        token: str | TokenSource,
        *,
        meeting_link: str | None = None,
        meeting_id: str | None = None,
        passcode: str | None = None,
        display_name: str,
    ) -> CallHandle:
        """Join by long or short join link, or by meeting id and passcode; the handle is in LOBBY or CONNECTED."""
        ...

    async def leave(self, call_id: str, token: str) -> None:
        """Hang up. Idempotent: leaving a finished or unknown call is not an error."""
        ...

    async def get(self, call_id: str, token: str) -> CallHandle:
        """The call leg's current state; NotFoundError if the connector does not know it."""
        ...

    def watch(self, call_id: str, token: str | TokenSource) -> AsyncGenerator[CallEvent, None]:
        """The current state, then every change, ending after a final state (``CallState.final``).

        A dropped event stream is reconnected transparently; the same state is never yielded twice in a row.
        A generator rather than a bare iterator, so a caller that stops early can ``aclose()`` it (or use
        ``contextlib.aclosing``) and release the open stream at once instead of whenever it is collected.
        """
        ...

    async def start(self) -> None:
        """Open what the connector holds for its lifetime (the browser connector launches its browser here, so a
        missing or broken one shows when the bridge starts); called once, before the first join."""
        ...

    async def close(self) -> None:
        """Release the connector's resources; watches still open end without a final state."""
        ...


def check_join(meeting_link: str | None, meeting_id: str | None, passcode: str | None, display_name: str) -> None:
    """Fail early, without a request, when a join names no meeting, names it two ways, or has no display name."""
    if not display_name.strip():
        raise PermanentError("Join needs a display name.")
    if meeting_link and (meeting_id or passcode):
        raise PermanentError("Join by meeting_link, or by meeting_id and passcode, not both.")
    if not meeting_link and not (meeting_id and passcode):
        raise PermanentError("Join needs meeting_link, or meeting_id with passcode.")


def parse_state(value: object) -> CallState | None:
    """A call state from the wire, or None for a value this version does not know (newer services add some)."""
    if isinstance(value, str):
        try:
            return CallState(value)
        except ValueError:
            return None
    return None
