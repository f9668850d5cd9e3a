"""The doctor's checks of the call side: the connector is ready, and (with --join) a test guest joins, chats, leaves."""

from __future__ import annotations

import asyncio
import os
import shutil
from contextlib import aclosing
from pathlib import Path

from ..acs.chat import ChatService
from ..acs.identity import IdentityService
from ..calls.base import CallConnector
from ..calls.client_reported import ClientReportedConnector
from ..config import Settings
from ..errors import BridgeError, NotFoundError, NotInCallError, PermanentError
from ..models import CallState
from ..relay.plans import CHECK_KEY
from .meetings import Resolved
from .report import Step, failed, passed, skipped

CONNECTOR = "call connector"
PAGE = "call connector: the Calling SDK loads in a page"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
SDK_BUNDLE = Path(__file__).resolve().parent.parent / "calls" / "browser" / "static" / "sdk" / "calling.js"
"""Where `make joiner` puts the bundle of @azure/communication-calling the browser connector's page loads."""
TEST_NAME = "Meeting bridge check (test)"
TEST_TEXT = "A test message from the meeting bridge's set-up check; please ignore it."
LOBBY_FIX = (
    "admit the test guest, or let guests skip the lobby: the meeting's options (Who can bypass the lobby: Everyone), "
    "or the tenant's meeting policy (AutoAdmittedUsers Everyone)"
)
REFUSED_FIX = (
    "the tenant refuses guests the meeting chat: allow it in the Teams meeting policy (MeetingChatEnabledType Enabled, "
    "not EnabledExceptAnonymous); if that is set, the service may be failing (Azure/Communication#600)"
)


def connector_kind(settings: Settings) -> str:
    """Which connector `run` would use (calls.connector, with auto decided as the app decides it)."""
    kind = str(settings.calls.connector)
    if kind == "auto":
        return "sandbox" if settings.use_sandbox or settings.calls.sandbox_endpoint else "client_reported"
    return kind


def browser_ready(chromium: str, bundle: Path = SDK_BUNDLE) -> list[Step]:
    """What can be checked of the browser connector without it: Chromium and the SDK bundle."""
    found = shutil.which(chromium) if os.sep not in chromium else chromium
    if not found or not os.access(found, os.X_OK):
        return [
            failed(
                CONNECTOR,
                f"no Chromium at {chromium}",
                "install Debian's chromium (apt-get install chromium) or set calls.browser.chromium to its path",
            )
        ]
    if not bundle.is_file():
        return [
            failed(
                CONNECTOR,
                f"Chromium at {found}, but no Calling SDK bundle at {bundle}",
                "build it: make joiner (needs Node.js and npm)",
            )
        ]
    return [
        passed(CONNECTOR, f"browser: Chromium at {found}, the Calling SDK bundle at {bundle}"),
        # The page itself is the browser connector's (bot/calls/browser), not in this build yet.
        skipped(PAGE, "not checked: this build has no browser connector (bot/calls/browser) to load it"),
    ]


async def connector_ready(
    settings: Settings,
    connector: CallConnector,
    identities: IdentityService,
    chromium: str | None,
    signed_in: bool,
) -> list[Step]:
    kind = connector_kind(settings)
    if kind == "browser" or chromium is not None:
        return browser_ready(chromium or DEFAULT_CHROMIUM)
    if isinstance(connector, ClientReportedConnector):
        return [passed(CONNECTOR, "client-reported: your app joins the call itself and reports it (nothing to check)")]
    if not signed_in:
        return [skipped(CONNECTOR, f"{kind}: not tried: it needs a token, and the credential is not accepted")]
    try:
        identity = await identities.create_identity()
        try:
            token, _ = await identities.issue_token(identity)
            await connector.get("00000000-0000-0000-0000-000000000000", token)
        finally:
            await identities.delete_identity(identity)
    except NotFoundError:
        return [passed(CONNECTOR, f"{kind}: its call API answers")]
    except BridgeError as exc:
        return [failed(CONNECTOR, f"{kind}: {exc}", "check calls.sandbox_endpoint and acs.ca_file")]
    return [passed(CONNECTOR, f"{kind}: its call API answers")]


async def join_meeting(
    meeting: Resolved,
    connector: CallConnector,
    identities: IdentityService,
    chat: ChatService,
    timeout_s: float,
) -> Step:
    """A test guest joins the meeting's call, sends one message marked as a test, and leaves."""
    name = f"{meeting.label}: a test guest joins and chats"
    if not meeting.found:
        return skipped(name, "not tried: the meeting was not found")
    if meeting.live is False:
        return skipped(name, "not live now (Graph gives its start and end)")
    cfg = meeting.config
    identity = await identities.create_identity()
    call_id: str | None = None
    token = ""
    try:
        token, _ = await identities.issue_token(identity)
        parsed_id, passcode = _short(meeting)
        link = cfg.link or (meeting.info.join_web_url if meeting.info is not None else None)
        if parsed_id and passcode:
            handle = await connector.join(token, meeting_id=parsed_id, passcode=passcode, display_name=TEST_NAME)
        else:
            handle = await connector.join(token, meeting_link=link, display_name=TEST_NAME)
        call_id = handle.call_id
        loop = asyncio.get_running_loop()
        started, admitted = loop.time(), None
        try:
            async with asyncio.timeout(timeout_s), aclosing(connector.watch(call_id, token)) as events:
                async for event in events:
                    if event.state == CallState.CONNECTED:
                        admitted = loop.time()
                        break
                    if event.state.final:
                        return failed(
                            name, f"the call ended before it connected: {event.reason or event.state}", LOBBY_FIX
                        )
        except TimeoutError:
            return failed(name, f"waited {timeout_s:g} s in the lobby and nobody admitted the test guest", LOBBY_FIX)
        waited = (admitted or started) - started
        lobby = f" after {waited:.0f} s in the lobby" if waited >= 1 else ""
        thread_id = meeting.thread_id or handle.thread_id
        if thread_id is None:
            return failed(name, "joined, but the connector gave no chat thread", "look the meeting up in Graph")
        try:
            await chat.send(identity, thread_id, TEST_TEXT, display_name=TEST_NAME, metadata={CHECK_KEY: "test"})
        except NotInCallError as exc:
            return failed(name, f"joined{lobby}, but the chat is refused while in the call: {exc}", REFUSED_FIX)
        return passed(name, f"joined{lobby}, sent a test message, left")
    except PermanentError as exc:
        if "ended" in str(exc):
            return skipped(name, f"not live: {exc}")
        return failed(name, f"could not join: {exc}", "check the meeting's link and that ACS guests may join it")
    except BridgeError as exc:
        return failed(name, f"could not join: {exc}", "try again; check the connector's reach to the service")
    finally:
        if call_id is not None:
            try:
                await connector.leave(call_id, token)
            except BridgeError:
                pass  # the identity goes next, and its leg with it
        await chat.forget(identity)
        await identities.delete_identity(identity)


def _short(meeting: Resolved) -> tuple[str | None, str | None]:
    info = meeting.info
    if info is not None and info.join_meeting_id and info.passcode:
        return info.join_meeting_id, info.passcode
    return None, None
