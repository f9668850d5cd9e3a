"""Helpers for the meeting, interop and call tests: ACS users through the real SDKs, call legs and their events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from azure.communication.chat import ChatMessage
from azure.communication.chat.aio import ChatClient, ChatThreadClient, CommunicationTokenCredential
from azure.communication.identity.aio import CommunicationIdentityClient
from azure.core.exceptions import HttpResponseError

from bot.sandbox import SandboxInfo
from tests.support.sandbox import Control

CHAT_API = "2024-03-07"
EVENT_TIMEOUT_S = 5.0
FINAL_STATES = frozenset({"left", "removed", "ended"})
Json = dict[str, Any]


@dataclass(frozen=True)
class AcsUser:
    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def new_user(info: SandboxInfo, scopes: tuple[str, ...] = ("chat", "voip")) -> AcsUser:
    """A fresh ACS identity and token, made with the real identity SDK."""
    client = CommunicationIdentityClient.from_connection_string(info.connection_string, connection_verify=info.ca_file)
    async with client:
        user, token = await client.create_user_and_token(scopes=list(scopes))
    return AcsUser(str(user.properties["id"]), str(token.token))


def chat(info: SandboxInfo, user: AcsUser, thread_id: str, **kwargs: Any) -> ChatThreadClient:
    """A real ChatThreadClient trusting the sandbox's CA (use `async with`)."""
    credential = CommunicationTokenCredential(user.token)
    return ChatThreadClient(info.endpoint, credential, thread_id, connection_verify=info.ca_file, **kwargs)


def chat_client(info: SandboxInfo, user: AcsUser, **kwargs: Any) -> ChatClient:
    credential = CommunicationTokenCredential(user.token)
    return ChatClient(info.endpoint, credential, connection_verify=info.ca_file, **kwargs)


async def messages(client: ChatThreadClient, **kwargs: Any) -> list[ChatMessage]:
    """Every message the client may see, newest first."""
    return [m async for m in client.list_messages(**kwargs)]


async def texts(client: ChatThreadClient) -> list[str]:
    """The text of every user message the client may see, oldest first."""
    found = [m for m in await messages(client) if m.type in ("text", "html") and m.content is not None]
    return [str(m.content.message) for m in reversed(found)]


def chat_path(thread_id: str, rest: str = "") -> str:
    return f"/chat/threads/{quote(thread_id, safe='')}{rest}?api-version={CHAT_API}"


async def join(
    control: Control, user: AcsUser, meeting: Json, name: str, *, by: str = "link", expect: int = 201
) -> Json:
    """Join the meeting's call as `user` (by long link, short link or meeting id and passcode)."""
    body: Json = {"displayName": name}
    if by == "link":
        body["meetingLink"] = meeting["joinWebUrl"]
    elif by == "short":
        body["meetingLink"] = meeting["shortUrl"]
    else:
        body |= {"meetingId": meeting["joinMeetingId"], "passcode": meeting["passcode"]}
    status, answer = await control.call("POST", "/sandbox/v1/calls", body, headers=user.auth)
    assert status == expect, (status, answer)
    return dict(answer)


async def get_call(control: Control, user: AcsUser, call_id: str) -> Json:
    return dict(await control.ok("GET", f"/sandbox/v1/calls/{call_id}", headers=user.auth))


async def leave(control: Control, user: AcsUser, call_id: str) -> None:
    status, body = await control.call("DELETE", f"/sandbox/v1/calls/{call_id}", headers=user.auth)
    assert status == 204, (status, body)


async def organizer_view(control: Control, meeting: Json) -> list[Json]:
    """The meeting thread as the organizer sees it in Teams, oldest first."""
    body = await control.ok("GET", f"/sandbox/v1/meetings/{meeting['id']}/messages")
    return list(body["value"])


def system_names(view: list[Json], kind: str) -> list[str]:
    """Display names in the participantAdded / participantRemoved system messages of an organizer view."""
    return [str(p.get("displayName", "")) for m in view if m["type"] == kind for p in m["content"]["participants"]]


async def expect_forbidden(info: SandboxInfo, control: Control, user: AcsUser, thread_id: str) -> None:
    """Every chat operation on the meeting thread answers 403 with the interop body, through the SDK and raw."""
    async with chat(info, user, thread_id, retry_total=0) as client:
        attempts: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("send_message", lambda: client.send_message("hello?")),
            ("list_messages", lambda: messages(client)),
            ("list_participants", lambda: _participants(client)),
            ("get_properties", client.get_properties),
        ]
        for name, attempt in attempts:
            try:
                await attempt()
            except HttpResponseError as exc:
                assert exc.status_code == 403, (name, exc.status_code)
                assert exc.error is None, name  # the body is not in the spec's shape
                assert exc.response is not None
                assert json.loads(exc.response.text())["CommunicationError"]["Code"] == "Forbidden", name
            else:
                raise AssertionError(f"{name} succeeded for a user who is not in the call")
    for method, rest, body in (
        ("GET", "/messages", None),
        ("POST", "/messages", {"content": "hi", "type": "text"}),
        ("GET", "/participants", None),
        ("GET", "", None),
    ):
        status, answer = await control.call(method, chat_path(thread_id, rest), body, headers=user.auth)
        assert status == 403, (method, rest, status, answer)
        error = answer["CommunicationError"]
        assert error["Code"] == "Forbidden"
        assert "permission" in error["Message"]


async def _participants(client: ChatThreadClient) -> list[Any]:
    return [p async for p in client.list_participants()]


async def participant_names(client: ChatThreadClient) -> dict[str, str]:
    return {p.identifier.raw_id: p.display_name for p in await _participants(client)}


class CallEvents:
    """A reader of a call leg's server-sent events; each read is bounded by EVENT_TIMEOUT_S."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> Json | None:
        """The next state event, or None when the stream has ended."""
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            event, data = "", ""
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data:
                        assert event == "state", event
                        return dict(json.loads(data))
                    continue
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    event = value
                elif field == "data":
                    data += value

    async def states(self) -> list[str]:
        """The states of every remaining event up to the end of the stream."""
        out: list[str] = []
        while (event := await self.next()) is not None:
            out.append(str(event["state"]))
        return out


@asynccontextmanager
async def call_events(control: Control, user: AcsUser, call_id: str) -> AsyncIterator[CallEvents]:
    url = f"{control.base}/sandbox/v1/calls/{call_id}/events"
    async with control.session.get(url, headers=user.auth) as response:
        assert response.status == 200, response.status
        assert response.headers["Content-Type"].startswith("text/event-stream")
        yield CallEvents(response)
