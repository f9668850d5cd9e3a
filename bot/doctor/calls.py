"""The doctor's checks of the call side: the connector is ready, and (with --join) a test guest joins, chats, leaves."""

from __future__ import annotations

import asyncio
import os
import shutil
from contextlib import aclosing

from ..acs.chat import ChatService
from ..acs.identity import IdentityService
from ..calls.base import CallConnector
from ..calls.browser import BrowserConnector, sdk_url
from ..calls.browser.server import REAL_SDK
from ..calls.choice import connector_kind, sandbox_of
from ..calls.client_reported import ClientReportedConnector
from ..config import Settings
from ..errors import BridgeError, NotFoundError, NotInCallError, PermanentError
from ..models import CallState
from ..relay.plans import CHECK_KEY
from .meetings import Resolved
from .report import Step, failed, passed, skipped

CONNECTOR = "call connector"
PAGE = "call connector: the Calling SDK loads in a page"
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


def _chromium(path: str) -> str | None:
    found = shutil.which(path) if os.sep not in path else path
    return found if found and os.path.isfile(found) and os.access(found, os.X_OK) else None


async def browser_ready(settings: Settings, connector: CallConnector, endpoint: str) -> list[Step]:
    """Chromium is there, so is the SDK its pages load, and a page loads it (with the browser the bridge would run)."""
    browser = settings.calls.browser
    found = _chromium(browser.chromium)
    if found is None:
        fix = "install Debian's chromium (apt-get install chromium) or set calls.browser.chromium to its path"
        return [failed(CONNECTOR, f"no Chromium at {browser.chromium}", fix)]
    url = sdk_url(browser, sandbox_of(settings, endpoint))
    if url is None and not REAL_SDK.is_file():
        fix = "build it: make joiner (Node.js and npm are needed to build it, not to run it)"
        return [failed(CONNECTOR, f"Chromium at {found}, but no Calling SDK bundle at {REAL_SDK}", fix)]
    sdk = f"the stand-in SDK at {url}" if url else f"the Calling SDK bundle at {REAL_SDK}"
    steps = [passed(CONNECTOR, f"browser: Chromium at {found}, {sdk}")]
    if not isinstance(connector, BrowserConnector):
        return [*steps, skipped(PAGE, "not tried: the connector is not the browser's")]
    try:
        await connector.start()
        page = await connector.browser.open_page()
        await connector.browser.recycle(page)
    except BridgeError as exc:
        fix = "see the error: a Chromium that starts (calls.browser.args), an SDK its page can load (calls.browser.sdk)"
        return [*steps, failed(PAGE, f"no: {exc}", fix)]
    return [*steps, passed(PAGE, f"a joiner page loaded {connector.sdk}")]


async def connector_ready(
    settings: Settings, connector: CallConnector, identities: IdentityService, signed_in: bool
) -> list[Step]:
    kind = connector_kind(settings)
    assert settings.acs.endpoint is not None
    if kind == "browser":
        return await browser_ready(settings, connector, settings.acs.endpoint)
    if isinstance(connector, ClientReportedConnector):
        return [passed(CONNECTOR, "client-reported: your app joins the call itself and reports it (nothing to check)")]
    if not signed_in:
        return [skipped(CONNECTOR, f"{kind}: not tried: it needs a token, and the credential is not accepted")]
    try:
        await connector.start()
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
        return skipped(name, "not tried: the meeting could not be looked up")
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
