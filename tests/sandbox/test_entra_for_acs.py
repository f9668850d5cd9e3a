"""The sandbox's ACS resource accepts Entra ID tokens for itself on its identity and SMS APIs, as the service does, and
keeps accepting HMAC; other bearer tokens are refused."""

from __future__ import annotations

import json

import aiohttp
import pytest

from bot.sandbox import SandboxInfo
from tests.support.acs import IDENTITY_API, error_of, hmac_headers, request
from tests.support.sandbox import Control

pytestmark = pytest.mark.usefixtures("control")
IDENTITIES = f"/identities?api-version={IDENTITY_API}"
SMS = "/sms?api-version=2021-03-07"


async def _entra_token(http: aiohttp.ClientSession, info: SandboxInfo, scope: str) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": info.client_id,
        "client_secret": info.client_secret,
        "scope": scope,
    }
    async with http.post(f"{info.authority_host}/{info.tenant_id}/oauth2/v2.0/token", data=form) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["access_token"])


@pytest.mark.parametrize(
    "scope", ["https://communication.azure.com//.default", "https://communication.azure.com/.default"]
)
async def test_an_entra_token_for_the_resource_creates_an_identity(
    http: aiohttp.ClientSession, info: SandboxInfo, scope: str
) -> None:
    token = await _entra_token(http, info, scope)
    status, body, _ = await request(
        http, info, "POST", IDENTITIES, body=b"{}", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 201 and body["identity"]["id"].startswith("8:acs:")


async def test_a_graph_token_is_refused_by_the_identity_api(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    token = await _entra_token(http, info, "https://graph.microsoft.com/.default")
    status, body, _ = await request(http, info, "POST", IDENTITIES, headers={"Authorization": f"Bearer {token}"})
    assert status == 401
    assert "not valid for this resource" in error_of(body)[1]


async def test_an_entra_token_sends_sms_and_hmac_still_does(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    token = await _entra_token(http, info, "https://communication.azure.com//.default")
    for n, auth in enumerate(("entra", "hmac")):
        body = json.dumps(
            {"from": info.sms_number, "smsRecipients": [{"to": f"+1555123900{n}"}], "message": f"via {auth}"}
        ).encode()
        headers = (
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            if auth == "entra"
            else hmac_headers(info, "POST", SMS, body)
        )
        status, answer, _ = await request(http, info, "POST", SMS, body=body, headers=headers)
        assert status == 202, answer
        assert answer["value"][0]["successful"] is True


async def test_the_managed_identity_endpoint_refuses_an_unknown_resource(
    http: aiohttp.ClientSession, info: SandboxInfo
) -> None:
    url = f"{info.identity_endpoint}?api-version=2019-08-01&resource=https://vault.azure.net"
    async with http.get(url, headers={"X-IDENTITY-HEADER": info.identity_header}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_resource"


async def test_the_identity_header_is_not_in_the_public_info(control: Control, info: SandboxInfo) -> None:
    body = await control.ok("GET", "/sandbox/v1/info")
    assert body["identityEndpoint"] == info.identity_endpoint
    assert "identityHeader" not in body and info.identity_header not in json.dumps(body)
