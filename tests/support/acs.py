"""Shared test helpers: identities and tokens through the real SDK, raw HMAC requests, chat clients, call joins."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import jwt
from azure.communication.chat import ChatParticipant, CommunicationUserIdentifier
from azure.communication.chat.aio import ChatClient, ChatThreadClient, CommunicationTokenCredential
from azure.communication.identity.aio import CommunicationIdentityClient
from azure.core.exceptions import HttpResponseError

from bot.sandbox import SandboxInfo
from bot.sandbox.util import now, rfc1123

IDENTITY_API = "2023-10-01"
CHAT_API = "2024-03-07"


def identity_client(info: SandboxInfo, **kwargs: Any) -> CommunicationIdentityClient:
    return CommunicationIdentityClient.from_connection_string(
        info.connection_string, connection_verify=info.ca_file, **kwargs
    )


async def new_user(info: SandboxInfo, scopes: Sequence[str] = ("chat", "voip")) -> tuple[str, str]:
    """A fresh ACS identity and a token for it, made with the real identity SDK: (raw id, token)."""
    async with identity_client(info) as client:
        user, token = await client.create_user_and_token(list(scopes))
    return str(user.properties["id"]), str(token.token)


def chat_client(info: SandboxInfo, token: str, **kwargs: Any) -> ChatClient:
    return ChatClient(info.endpoint, CommunicationTokenCredential(token), connection_verify=info.ca_file, **kwargs)


def thread_client(info: SandboxInfo, token: str, thread_id: str, **kwargs: Any) -> ChatThreadClient:
    """A ChatThreadClient built directly: get_chat_thread_client would drop connection_verify."""
    return ChatThreadClient(
        info.endpoint, CommunicationTokenCredential(token), thread_id, connection_verify=info.ca_file, **kwargs
    )


async def new_thread(info: SandboxInfo, token: str, topic: str, members: Sequence[tuple[str, str]] = ()) -> str:
    """A regular (non-Teams) thread created by the token's identity, with (raw id, display name) members."""
    participants = [
        ChatParticipant(identifier=CommunicationUserIdentifier(raw), display_name=name) for raw, name in members
    ]
    async with chat_client(info, token) as client:
        result = await client.create_chat_thread(topic, thread_participants=participants)
    assert not result.errors
    return str(result.chat_thread.id)


def decode_unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hmac_headers(
    info: SandboxInfo,
    method: str,
    path_and_query: str,
    body: bytes,
    *,
    access_key: str | None = None,
    date: str | None = None,
) -> dict[str, str]:
    """The headers ACS's HMAC-SHA256 scheme puts on a request, signed with the given (or the real) access key."""
    key = access_key if access_key is not None else info.connection_string.split("accesskey=", 1)[1]
    host = urlsplit(info.endpoint).netloc
    date = date or rfc1123(now())
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    to_sign = f"{method.upper()}\n{path_and_query}\n{date};{host};{content_hash}"
    signature = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
    return {
        "x-ms-date": date,
        "x-ms-content-sha256": content_hash,
        "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
        "Content-Type": "application/json",
    }


async def request(
    http: aiohttp.ClientSession,
    info: SandboxInfo,
    method: str,
    path_and_query: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """A raw request to the sandbox: (status, parsed JSON body or text or None, headers)."""
    url = info.endpoint.rstrip("/") + path_and_query
    async with http.request(method, url, data=body, headers=headers or {}) as resp:
        text = await resp.text()
        try:
            parsed: Any = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return resp.status, parsed, dict(resp.headers)


async def join_call(
    http: aiohttp.ClientSession, info: SandboxInfo, token: str, meeting: dict[str, Any], name: str = "Ann"
) -> dict[str, Any]:
    """Join the meeting's call as the token's identity (the Calling SDK's part); returns the call leg."""
    status, body, _ = await request(
        http,
        info,
        "POST",
        "/sandbox/v1/calls",
        body=json.dumps({"meetingLink": meeting["joinWebUrl"], "displayName": name}).encode(),
        headers=bearer(token) | {"Content-Type": "application/json"},
    )
    assert status == 201, (status, body)
    assert isinstance(body, dict)
    return body


def error_of(body: Any) -> tuple[str, str]:
    """(code, message) of an error body in the spec's shape; fails the test for any other shape."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str), body
    return error["code"], error["message"]


def retry_after(error: HttpResponseError) -> str:
    """The Retry-After header of the response an SDK error carries."""
    assert error.response is not None
    headers: dict[str, str] = dict(cast(Any, error.response).headers)
    return headers["Retry-After"]
