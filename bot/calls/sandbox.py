"""SandboxCallConnector: the CallConnector over the sandbox's call API (join, leave, get, server-sent state events)."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Any, NoReturn
from urllib.parse import quote

import aiohttp

from ..errors import (
    MeetingLookupError,
    NotFoundError,
    PermanentError,
    TransientError,
    body_message,
    from_status,
    parse_retry_after,
)
from ..models import CallEvent, CallHandle, CallState
from .base import TokenSource, check_join, parse_state, token_of
from .hub import RECONNECT, CallEventHub, hmac_headers
from .sse import SseParser
from .states import FINAL_STATE, end_reason

log = logging.getLogger(__name__)

CALLS_PATH = "/sandbox/v1/calls"
HUB_PATH = "/sandbox/v1/call-events"
REQUEST_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 10.0
# The sandbox sends a keep-alive comment every 15 s; three missed in a row means the stream is dead.
STREAM_IDLE_TIMEOUT_S = 45.0
MAX_RECONNECTS = 6


class SandboxCallConnector:
    """Joins ACS identities to sandbox meetings over HTTPS, sharing one aiohttp session among all calls.

    Given the resource's access key, every watch shares one resource-wide event stream (see hub.py); without it,
    each watch opens the call's own stream, authenticated by the identity's token.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        ca_file: str | None,
        session: aiohttp.ClientSession | None = None,
        access_key: str | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        stream_idle_timeout_s: float = STREAM_IDLE_TIMEOUT_S,
        max_reconnects: int = MAX_RECONNECTS,
    ) -> None:
        self._base = endpoint.rstrip("/")
        # Passed on every request, so a caller's session need not know the sandbox's CA.
        self._ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s, sock_connect=CONNECT_TIMEOUT_S)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=stream_idle_timeout_s
        )
        self._max_reconnects = max_reconnects
        self._closed = False
        self._streams: set[aiohttp.ClientResponse] = set()
        self._access_key = access_key
        self._hub = CallEventHub(self._hub_stream, _hub_event, max_reconnects) if access_key else None

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise PermanentError("The call connector is closed.")
        if self._session is None:
            # Created on first use: aiohttp wants a running event loop, which __init__ may not have.
            self._session = aiohttp.ClientSession()
        return self._session

    async def start(self) -> None:
        """Nothing to open: the HTTP session is made on first use."""

    async def close(self) -> None:
        self._closed = True
        if self._hub is not None:
            await self._hub.close()
        # Closing the open streams ends their watches, even on a session the caller owns and keeps.
        for resp in list(self._streams):
            resp.close()
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def join(
        self,
        token: str | TokenSource,
        *,
        meeting_link: str | None = None,
        meeting_id: str | None = None,
        passcode: str | None = None,
        display_name: str,
    ) -> CallHandle:
        check_join(meeting_link, meeting_id, passcode, display_name)
        body: dict[str, str] = {"displayName": display_name}
        if meeting_link:
            body["meetingLink"] = meeting_link
        else:
            body |= {"meetingId": meeting_id or "", "passcode": passcode or ""}
        try:
            answer = await self._request("POST", CALLS_PATH, await token_of(token), body)
        except NotFoundError as exc:
            # On join the only thing that can be missing is the meeting the link or id names.
            raise MeetingLookupError(str(exc)) from exc
        return _handle(answer)

    async def get(self, call_id: str, token: str) -> CallHandle:
        return _handle(await self._request("GET", _call_path(call_id), token))

    async def leave(self, call_id: str, token: str) -> None:
        try:
            await self._request("DELETE", _call_path(call_id), token)
        except NotFoundError:
            log.debug("leave: call %s is unknown, nothing to do", call_id)

    async def watch(self, call_id: str, token: str | TokenSource) -> AsyncGenerator[CallEvent, None]:
        if self._hub is not None:
            async with aclosing(self._hub.watch(call_id, token, self._state)) as events:
                async for event in events:
                    yield event
            return
        last: CallState | None = None
        failures = 0
        while not self._closed:
            try:
                # Asked again on each reconnect: a watch can outlive the token it started with.
                async with aclosing(self._stream(call_id, await token_of(token))) as stream:
                    async for event in stream:
                        if failures:
                            log.info("call %s: event stream back after %d failed attempts", call_id, failures)
                            failures = 0
                        if event.state != last:
                            last = event.state
                            yield event
                        if event.state.final:
                            return
                raise TransientError("the event stream ended before a final state")
            except TransientError as exc:
                if self._closed:
                    return
                failures += 1
                if failures > self._max_reconnects:
                    raise
                delay = RECONNECT.delay(failures, exc.retry_after)
                # Logged once per outage, not once per attempt.
                level = logging.INFO if failures == 1 else logging.DEBUG
                log.log(level, "call %s: event stream lost (%s); reconnecting", call_id, exc)
                await asyncio.sleep(delay)
            if self._closed:
                return
            # A change may have happened while no stream was open; reading the state covers the gap.
            try:
                snapshot = await self._state(call_id, token)
            except TransientError:
                continue
            if snapshot is not None and snapshot.state != last:
                last = snapshot.state
                yield snapshot
            if snapshot is not None and snapshot.state.final:
                return

    async def _state(self, call_id: str, token: str | TokenSource) -> CallEvent | None:
        return _event(call_id, await self._request("GET", _call_path(call_id), await token_of(token)))

    @asynccontextmanager
    async def _hub_stream(self) -> AsyncIterator[aiohttp.ClientResponse]:
        """The resource-wide stream, signed with the access key; raises our errors on a refusal."""
        assert self._access_key is not None
        url = f"{self._base}{HUB_PATH}"
        headers = hmac_headers(self._access_key, "GET", url) | {"Accept": "text/event-stream"}
        async with self._http().get(url, headers=headers, timeout=self._stream_timeout, ssl=self._ssl) as resp:
            if resp.status != 200:
                _raise_for(resp.status, await resp.text(), resp.headers)
            self._streams.add(resp)
            try:
                yield resp
            finally:
                self._streams.discard(resp)

    async def _stream(self, call_id: str, token: str) -> AsyncGenerator[CallEvent, None]:
        """One connection to the event stream; raises TransientError when it breaks."""
        url = f"{self._base}{_call_path(call_id)}/events"
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        parser = SseParser()
        try:
            async with self._http().get(url, headers=headers, timeout=self._stream_timeout, ssl=self._ssl) as resp:
                if resp.status != 200:
                    _raise_for(resp.status, await resp.text(), resp.headers)
                self._streams.add(resp)
                try:
                    async for chunk in resp.content.iter_any():
                        for sse in parser.feed(chunk):
                            event = _sse_event(call_id, sse.event, sse.data)
                            if event is not None:
                                yield event
                finally:
                    self._streams.discard(resp)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TransientError(f"call {call_id} event stream: {_describe(exc)}") from exc

    async def _request(self, method: str, path: str, token: str, body: dict[str, str] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self._http().request(
                method, self._base + path, json=body, headers=headers, timeout=self._timeout, ssl=self._ssl
            ) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    _raise_for(resp.status, text, resp.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"{method} {path}: {_describe(exc)}") from exc
        try:
            return json.loads(text) if text else None
        except ValueError as exc:
            raise TransientError(f"{method} {path}: the answer is not JSON") from exc


def access_key_of(connection_string: str) -> str | None:
    """The accesskey part of an ACS connection string (endpoint=...;accesskey=...)."""
    for part in connection_string.split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "accesskey" and value.strip():
            return value.strip()
    return None


def _call_path(call_id: str) -> str:
    # Call ids come from the service, but a caller may hand in anything; keep it one path segment.
    return f"{CALLS_PATH}/{quote(call_id, safe='')}"


def _handle(answer: Any) -> CallHandle:
    if not isinstance(answer, dict) or not isinstance(answer.get("callId"), str):
        raise TransientError("The call API answered without a callId.")
    state = parse_state(answer.get("state"))
    if state is None:
        raise TransientError(f"The call API answered an unknown call state {answer.get('state')!r}.")
    thread_id = answer.get("threadId")
    return CallHandle(answer["callId"], state, thread_id if isinstance(thread_id, str) else None)


def _sse_event(call_id: str, name: str, data: str) -> CallEvent | None:
    if name != "state":
        return None
    try:
        body = json.loads(data)
    except ValueError:
        log.warning("call %s: a state event that is not JSON was skipped", call_id)
        return None
    return _event(call_id, body)


def _hub_event(data: str) -> CallEvent | None:
    """A state event of the resource-wide stream, which names its call."""
    try:
        body = json.loads(data)
    except ValueError:
        log.warning("a call state event that is not JSON was skipped")
        return None
    call_id = body.get("callId") if isinstance(body, dict) else None
    return _event(call_id, body) if isinstance(call_id, str) else None


def _event(call_id: str, body: Any) -> CallEvent | None:
    """A call snapshot (from GET or an event) as a CallEvent; None, logged, if it has no state this code knows.

    A finished leg's callEndReason, when the snapshot has one, decides its state by the one table (states.py),
    so a network drop is re-joined and an unknown code fails, as with the Calling SDK itself.
    """
    state = parse_state(body.get("state")) if isinstance(body, dict) else None
    end = body.get("callEndReason") if isinstance(body, dict) else None
    if isinstance(end, dict) and (state is None or state.final):
        outcome = end_reason(end.get("code"), end.get("subCode"))
        reason = body.get("reason")
        return CallEvent(
            call_id, FINAL_STATE[outcome.verdict], outcome.reason or (reason if isinstance(reason, str) else None)
        )
    if state is None:
        log.warning("call %s: a snapshot without a known state was skipped", call_id)
        return None
    reason = body.get("reason")
    return CallEvent(call_id, state, reason if isinstance(reason, str) else None)


def _raise_for(status: int, text: str, headers: Mapping[str, str]) -> NoReturn:
    message = body_message(text) or _plain(text) or f"HTTP {status}"
    # 400 bad body, 403 missing voip scope or wrong passcode, 409 meeting ended: retrying will not help.
    raise from_status(status, message, retry_after=parse_retry_after(headers), forbidden=PermanentError)


def _plain(text: str) -> str | None:
    """The start of an error body that is not JSON (a proxy's page, say); None for a JSON body."""
    try:
        json.loads(text)
    except ValueError:
        return text.strip()[:200] or None
    return None


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
