"""The Identity API through the real identity SDK, and its HMAC authentication failures over raw HTTP."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import aiohttp
import pytest
from azure.communication.chat.aio import CommunicationTokenCredential
from azure.communication.identity import CommunicationTokenScope, CommunicationUserIdentifier
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from bot.sandbox import Sandbox, SandboxInfo
from bot.sandbox.util import now, rfc1123
from tests.support.acs import (
    IDENTITY_API,
    chat_client,
    decode_unverified,
    error_of,
    hmac_headers,
    identity_client,
    request,
)

pytestmark = pytest.mark.usefixtures("control")

IDENTITIES = f"/identities?api-version={IDENTITY_API}"


async def _list_threads(info: SandboxInfo, token: str) -> list[str]:
    """Any chat call will do to test a token; this one needs no thread."""
    async with chat_client(info, token) as client:
        return [item.id async for item in client.list_chat_threads()]


# --- the SDK ------------------------------------------------------------------------------------------


async def test_create_user(info: SandboxInfo, sandbox: Sandbox) -> None:
    async with identity_client(info) as client:
        user = await client.create_user()
    assert isinstance(user, CommunicationUserIdentifier)
    assert user.raw_id.startswith(f"8:acs:{info.resource_id}_")
    assert sandbox.world is not None and user.raw_id in sandbox.world.identities


async def test_create_user_and_token_is_a_jwt_with_identity_scopes_and_expiry(info: SandboxInfo) -> None:
    before = int(now())
    async with identity_client(info) as client:
        user, token = await client.create_user_and_token([CommunicationTokenScope.CHAT, CommunicationTokenScope.VOIP])
    claims = decode_unverified(token.token)
    assert claims["sub"] == user.raw_id
    assert set(claims["acsScope"].split(",")) == {"chat", "voip"}
    # Default lifetime: 24 hours.
    assert before + 1440 * 60 <= claims["exp"] <= int(now()) + 1440 * 60 + 1
    expires_on = datetime.fromisoformat(str(token.expires_on).replace("Z", "+00:00"))
    assert int(expires_on.timestamp()) == claims["exp"]

    # The chat SDK's credential parses it (it needs a JWT with exp) and hands it out unchanged.
    async with CommunicationTokenCredential(token.token) as credential:
        access = await credential.get_token()
    assert access.token == token.token
    assert access.expires_on == claims["exp"]
    assert await _list_threads(info, token.token) == []


async def test_get_token_with_custom_lifetime(info: SandboxInfo) -> None:
    async with identity_client(info) as client:
        user = await client.create_user()
        token = await client.get_token(user, [CommunicationTokenScope.CHAT], token_expires_in=timedelta(minutes=60))
    claims = decode_unverified(token.token)
    assert claims["sub"] == user.raw_id
    assert claims["acsScope"] == "chat"
    assert abs(claims["exp"] - (now() + 3600)) < 60


@pytest.mark.parametrize("minutes", [59, 1441])
async def test_token_lifetime_out_of_range_is_400(info: SandboxInfo, sandbox: Sandbox, minutes: int) -> None:
    async with identity_client(info) as client:
        user = await client.create_user()
        with pytest.raises(HttpResponseError) as get_err:
            await client.get_token(user, ["chat"], token_expires_in=timedelta(minutes=minutes))
        with pytest.raises(HttpResponseError) as create_err:
            await client.create_user_and_token(["chat"], token_expires_in=timedelta(minutes=minutes))
    for err in (get_err.value, create_err.value):
        assert err.status_code == 400
        assert f"expiresInMinutes must be between 60 and 1440, got {minutes}" in str(err)
    # The refused create_user_and_token left no identity behind.
    assert sandbox.world is not None and list(sandbox.world.identities) == [user.raw_id]


async def test_unknown_scope_is_400(info: SandboxInfo) -> None:
    async with identity_client(info) as client:
        user = await client.create_user()
        with pytest.raises(HttpResponseError) as exc:
            await client.get_token(user, ["chat", "email"])
    assert exc.value.status_code == 400
    assert "Unknown scope(s) email" in str(exc.value)


async def test_token_for_unknown_identity_is_404(info: SandboxInfo) -> None:
    async with identity_client(info) as client:
        with pytest.raises(ResourceNotFoundError):
            await client.get_token(CommunicationUserIdentifier(f"8:acs:{info.resource_id}_nobody"), ["chat"])


async def test_revoke_tokens_rejects_old_tokens_and_new_ones_work(info: SandboxInfo) -> None:
    async with identity_client(info) as client:
        user, old = await client.create_user_and_token(["chat"])
        assert await _list_threads(info, old.token) == []
        await client.revoke_tokens(user)
        with pytest.raises(ClientAuthenticationError) as exc:
            await _list_threads(info, old.token)
        assert "revoked" in str(exc.value)
        new = await client.get_token(user, ["chat"])
    assert await _list_threads(info, new.token) == []


async def test_delete_user_invalidates_its_tokens(info: SandboxInfo) -> None:
    async with identity_client(info) as client:
        user, token = await client.create_user_and_token(["chat"])
        await client.delete_user(user)
        with pytest.raises(ClientAuthenticationError):
            await _list_threads(info, token.token)
        with pytest.raises(ResourceNotFoundError):
            await client.get_token(user, ["chat"])


# --- raw HMAC ------------------------------------------------------------------------------------------


async def test_raw_signed_request_succeeds(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    body = json.dumps({"createTokenWithScopes": ["voip"], "expiresInMinutes": 60}).encode()
    status, answer, _ = await request(
        http, info, "POST", IDENTITIES, body=body, headers=hmac_headers(info, "POST", IDENTITIES, body)
    )
    assert status == 201, answer
    assert answer["identity"]["id"].startswith("8:acs:")
    assert decode_unverified(answer["accessToken"]["token"])["acsScope"] == "voip"


async def test_raw_expiry_validation_message(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    body = json.dumps({"createTokenWithScopes": ["chat"], "expiresInMinutes": 59}).encode()
    status, answer, _ = await request(
        http, info, "POST", IDENTITIES, body=body, headers=hmac_headers(info, "POST", IDENTITIES, body)
    )
    assert status == 400
    assert error_of(answer) == ("BadRequest", "expiresInMinutes must be between 60 and 1440, got 59.")


async def test_hmac_wrong_key_is_401(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5"
    headers = hmac_headers(info, "POST", IDENTITIES, b"", access_key=wrong)
    status, answer, _ = await request(http, info, "POST", IDENTITIES, headers=headers)
    assert status == 401
    assert error_of(answer) == ("Unauthorized", "HMAC authentication failed: signature does not match.")


async def test_hmac_tampered_body_is_401(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    signed = json.dumps({"createTokenWithScopes": ["chat"]}).encode()
    headers = hmac_headers(info, "POST", IDENTITIES, signed)
    sent = json.dumps({"createTokenWithScopes": ["chat", "voip"]}).encode()
    status, answer, _ = await request(http, info, "POST", IDENTITIES, body=sent, headers=headers)
    assert status == 401
    assert "x-ms-content-sha256 does not match the body" in error_of(answer)[1]


async def test_hmac_tampered_path_is_401(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    """A signature for one identity's path does not authorize a request on another's."""
    async with identity_client(info) as client:
        victim = await client.create_user()
    signed_path = f"/identities/8:acs:someone-else/:revokeAccessTokens?api-version={IDENTITY_API}"
    path = f"/identities/{victim.raw_id}/:revokeAccessTokens?api-version={IDENTITY_API}"
    status, answer, _ = await request(http, info, "POST", path, headers=hmac_headers(info, "POST", signed_path, b""))
    assert status == 401
    assert "signature does not match" in error_of(answer)[1]


@pytest.mark.parametrize("minutes", [16, -16])
async def test_hmac_date_too_far_off_is_401(http: aiohttp.ClientSession, info: SandboxInfo, minutes: int) -> None:
    headers = hmac_headers(info, "POST", IDENTITIES, b"", date=rfc1123(now() + minutes * 60))
    status, answer, _ = await request(http, info, "POST", IDENTITIES, headers=headers)
    assert status == 401
    assert "more than 15 minutes" in error_of(answer)[1]


async def test_hmac_date_within_skew_is_accepted(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    headers = hmac_headers(info, "POST", IDENTITIES, b"", date=rfc1123(now() - 14 * 60))
    status, answer, _ = await request(http, info, "POST", IDENTITIES, headers=headers)
    assert status == 201, answer


@pytest.mark.parametrize("missing", ["Authorization", "x-ms-date", "x-ms-content-sha256"])
async def test_hmac_missing_header_is_401(http: aiohttp.ClientSession, info: SandboxInfo, missing: str) -> None:
    headers = hmac_headers(info, "POST", IDENTITIES, b"")
    del headers[missing]
    status, answer, _ = await request(http, info, "POST", IDENTITIES, headers=headers)
    assert status == 401
    assert error_of(answer)[0] == "Unauthorized"


async def test_an_acs_user_token_is_not_accepted_by_identity_api(
    http: aiohttp.ClientSession, info: SandboxInfo
) -> None:
    """Bearer tokens are Entra ID's for the resource; a user's chat token is not one of them."""
    async with identity_client(info) as client:
        _, token = await client.create_user_and_token(["chat"])
    headers = {"Authorization": f"Bearer {token.token}"}
    status, answer, _ = await request(http, info, "POST", IDENTITIES, headers=headers)
    assert status == 401
    assert "not valid for this resource" in error_of(answer)[1]


async def test_missing_api_version_is_400(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    headers = hmac_headers(info, "POST", "/identities", b"")
    status, answer, _ = await request(http, info, "POST", "/identities", headers=headers)
    assert status == 400
    assert error_of(answer)[0] == "MissingApiVersionParameter"


async def test_raw_revoke_and_delete_answer_204(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    async with identity_client(info) as client:
        user = await client.create_user()
    for method, path in (
        ("POST", f"/identities/{user.raw_id}/:revokeAccessTokens?api-version={IDENTITY_API}"),
        ("DELETE", f"/identities/{user.raw_id}?api-version={IDENTITY_API}"),
    ):
        status, answer, _ = await request(http, info, method, path, headers=hmac_headers(info, method, path, b""))
        assert status == 204, answer
    path = f"/identities/{user.raw_id}?api-version={IDENTITY_API}"
    status, answer, _ = await request(http, info, "DELETE", path, headers=hmac_headers(info, "DELETE", path, b""))
    assert status == 404
    assert error_of(answer)[0] == "NotFound"
