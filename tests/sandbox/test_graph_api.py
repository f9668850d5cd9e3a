"""Entra sign-in and Graph onlineMeetings lookup through the real azure-identity and msgraph-sdk, and failures."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential as SyncClientSecretCredential
from azure.identity.aio import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.online_meeting import OnlineMeeting
from msgraph.generated.users.item.online_meetings.online_meetings_request_builder import OnlineMeetingsRequestBuilder
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory

from bot.sandbox import SandboxInfo
from bot.sandbox.graph_api import parse_filter
from tests.support.sandbox import Control

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
pytestmark = pytest.mark.usefixtures("control")


def _credential(info: SandboxInfo, secret: str | None = None) -> ClientSecretCredential:
    return ClientSecretCredential(
        info.tenant_id,
        info.client_id,
        secret if secret is not None else info.client_secret,
        authority=info.authority_host,
        connection_verify=info.ca_file,
    )


@pytest.fixture(scope="session")
async def graph(info: SandboxInfo) -> AsyncIterator[GraphServiceClient]:
    """A Graph client wired the way the bridge wires it: only the base URL and the trusted CA differ from Azure."""
    credential = _credential(info)
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE], allowed_hosts=["127.0.0.1"])
    async with credential, httpx.AsyncClient(verify=ssl.create_default_context(cafile=info.ca_file)) as client:
        adapter = GraphRequestAdapter(auth, client=GraphClientFactory.create_with_default_middleware(client=client))
        adapter.base_url = info.graph_base_url
        yield GraphServiceClient(request_adapter=adapter)


def _oid(meeting: dict[str, Any]) -> str:
    return str(meeting["organizerId"]).removeprefix("8:orgid:")


async def _find(graph: GraphServiceClient, oid: str, odata_filter: str) -> list[OnlineMeeting]:
    params = OnlineMeetingsRequestBuilder.OnlineMeetingsRequestBuilderGetQueryParameters(filter=odata_filter)
    result = await graph.users.by_user_id(oid).online_meetings.get(
        request_configuration=RequestConfiguration(query_parameters=params)
    )
    assert result is not None
    return list(result.value or [])


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _assert_is(found: OnlineMeeting, meeting: dict[str, Any]) -> None:
    assert found.id == meeting["id"]
    assert found.chat_info is not None and found.chat_info.thread_id == meeting["threadId"]
    assert found.join_web_url == meeting["joinWebUrl"]
    assert found.subject == meeting["subject"]
    assert found.start_date_time == _when(meeting["startDateTime"])
    assert found.end_date_time == _when(meeting["endDateTime"])
    assert found.start_date_time is not None and found.start_date_time.tzinfo is not None
    assert found.join_meeting_id_settings is not None
    assert found.join_meeting_id_settings.join_meeting_id == meeting["joinMeetingId"]


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --- the SDKs -----------------------------------------------------------------------------------------


async def test_lookup_by_join_web_url(graph: GraphServiceClient, control: Control) -> None:
    meeting = await control.meeting("Quarterly review")
    await control.meeting("Someone else's meeting")
    found = await _find(graph, _oid(meeting), f"JoinWebUrl eq {_quoted(meeting['joinWebUrl'])}")
    assert len(found) == 1
    _assert_is(found[0], meeting)


async def test_filter_property_name_is_case_insensitive(graph: GraphServiceClient, control: Control) -> None:
    meeting = await control.meeting()
    found = await _find(graph, _oid(meeting), f"joinWebUrl eq {_quoted(meeting['joinWebUrl'])}")
    assert [m.id for m in found] == [meeting["id"]]


async def test_lookup_by_join_meeting_id(graph: GraphServiceClient, control: Control) -> None:
    meeting = await control.meeting("Short link meeting")
    found = await _find(graph, _oid(meeting), f"joinMeetingIdSettings/joinMeetingId eq '{meeting['joinMeetingId']}'")
    assert len(found) == 1
    _assert_is(found[0], meeting)


async def test_lookup_by_id(graph: GraphServiceClient, control: Control) -> None:
    meeting = await control.meeting("By id")
    found = await graph.users.by_user_id(_oid(meeting)).online_meetings.by_online_meeting_id(meeting["id"]).get()
    assert found is not None
    _assert_is(found, meeting)


async def test_unknown_link_is_an_empty_result(graph: GraphServiceClient, control: Control) -> None:
    meeting = await control.meeting()
    other = meeting["joinWebUrl"].replace("meeting_", "meeting_X")
    assert await _find(graph, _oid(meeting), f"JoinWebUrl eq {_quoted(other)}") == []
    # Graph matches the link exactly; a decoded or re-cased link finds nothing rather than guessing.
    assert await _find(graph, _oid(meeting), f"JoinWebUrl eq {_quoted(meeting['joinWebUrl'].upper())}") == []
    assert await _find(graph, _oid(meeting), "JoinWebUrl eq 'it''s not a link'") == []


async def test_unknown_meeting_id_is_404(graph: GraphServiceClient, control: Control) -> None:
    meeting = await control.meeting()
    with pytest.raises(ODataError) as caught:
        await graph.users.by_user_id(_oid(meeting)).online_meetings.by_online_meeting_id("MSpnosuchmeeting").get()
    assert caught.value.response_status_code == 404
    assert caught.value.error is not None and caught.value.error.code == "NotFound"


async def test_meeting_of_another_organizer_is_404(graph: GraphServiceClient, control: Control) -> None:
    mine, theirs = await control.meeting(), await control.meeting()
    with pytest.raises(ODataError) as caught:
        await graph.users.by_user_id(_oid(mine)).online_meetings.by_online_meeting_id(theirs["id"]).get()
    assert caught.value.response_status_code == 404


async def test_unknown_organizer_is_404(graph: GraphServiceClient, control: Control) -> None:
    await control.meeting()
    with pytest.raises(ODataError) as caught:
        await _find(graph, "00000000-0000-0000-0000-000000000000", "JoinWebUrl eq 'x'")
    assert caught.value.response_status_code == 404
    assert caught.value.error is not None and caught.value.error.code == "Request_ResourceNotFound"


async def test_wrong_client_secret_fails_in_the_credential(info: SandboxInfo) -> None:
    async with _credential(info, secret="not-the-secret") as credential:
        with pytest.raises(ClientAuthenticationError, match="invalid_client"):
            await credential.get_token(GRAPH_SCOPE)


async def test_msal_discovers_the_sandbox_authority(info: SandboxInfo) -> None:
    """The sync credential goes through MSAL, which reads openid-configuration before asking for a token."""

    def sign_in() -> AccessToken:
        credential = SyncClientSecretCredential(
            info.tenant_id,
            info.client_id,
            info.client_secret,
            authority=info.authority_host,
            connection_verify=info.ca_file,
            # MSAL would otherwise ask login.microsoftonline.com to vouch for this authority.
            disable_instance_discovery=True,
        )
        with credential:
            return credential.get_token(GRAPH_SCOPE)

    # Blocking I/O: off the loop, which is the one serving the sandbox.
    token = await asyncio.to_thread(sign_in)
    assert token.token.count(".") == 2
    assert token.expires_on > datetime.now(UTC).timestamp()


def test_filter_literal_unescapes_doubled_quotes() -> None:
    _, value = parse_filter("joinMeetingIdSettings/JOINMEETINGID  eq  'it''s ''quoted'''")
    assert value == "it's 'quoted'"


# --- raw HTTP -----------------------------------------------------------------------------------------


async def _token_request(http: aiohttp.ClientSession, info: SandboxInfo, **changes: str) -> tuple[int, Any]:
    form = {
        "grant_type": "client_credentials",
        "client_id": info.client_id,
        "client_secret": info.client_secret,
        "scope": GRAPH_SCOPE,
    }
    tenant = changes.pop("tenant", info.tenant_id)
    form.update(changes)
    async with http.post(f"{info.authority_host}/{tenant}/oauth2/v2.0/token", data=form) as resp:
        return resp.status, await resp.json()


async def _graph_get(http: aiohttp.ClientSession, url: str, token: str | None, **params: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.get(url, headers=headers, params=params) as resp:
        return resp.status, await resp.json()


async def _app_token(http: aiohttp.ClientSession, info: SandboxInfo) -> str:
    status, body = await _token_request(http, info)
    assert status == 200, body
    return str(body["access_token"])


async def test_token_endpoint_answers_like_entra(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    status, body = await _token_request(http, info)
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0 and body["ext_expires_in"] > 0
    assert body["access_token"].count(".") == 2


@pytest.mark.parametrize(
    ("changes", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "00000000-0000-0000-0000-000000000000"}, 401, "invalid_client"),
        ({"tenant": "00000000-0000-0000-0000-000000000000"}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"scope": "https://management.azure.com/.default"}, 400, "invalid_scope"),
        ({"scope": ""}, 400, "invalid_request"),
    ],
)
async def test_token_endpoint_refuses(
    http: aiohttp.ClientSession, info: SandboxInfo, changes: dict[str, str], status: int, error: str
) -> None:
    got, body = await _token_request(http, info, **changes)
    assert got == status
    assert body["error"] == error
    assert body["error_description"]
    assert info.client_secret not in str(body)


async def test_graph_without_token_is_401(http: aiohttp.ClientSession, info: SandboxInfo, control: Control) -> None:
    meeting = await control.meeting()
    status, body = await _graph_get(http, f"{info.graph_base_url}/users/{_oid(meeting)}/onlineMeetings", None)
    assert status == 401
    assert body["error"]["code"] == "InvalidAuthenticationToken"


async def test_graph_with_bad_token_is_401(http: aiohttp.ClientSession, info: SandboxInfo, control: Control) -> None:
    meeting = await control.meeting()
    url = f"{info.graph_base_url}/users/{_oid(meeting)}/onlineMeetings/{meeting['id']}"
    token = await _app_token(http, info)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in ("not-a-jwt", tampered):
        status, body = await _graph_get(http, url, bad)
        assert status == 401
        assert body["error"]["code"] == "InvalidAuthenticationToken"
    status, _ = await _graph_get(http, url, token)
    assert status == 200


@pytest.mark.parametrize(
    "odata_filter",
    [
        "subject eq 'Weekly sync'",
        "JoinWebUrl eq unquoted",
        "JoinWebUrl eq 'unterminated",
        "JoinWebUrl eq 'a' or JoinWebUrl eq 'b'",
        "",
    ],
)
async def test_bad_filter_is_400(
    http: aiohttp.ClientSession, info: SandboxInfo, control: Control, odata_filter: str
) -> None:
    meeting = await control.meeting()
    url = f"{info.graph_base_url}/users/{_oid(meeting)}/onlineMeetings"
    status, body = await _graph_get(http, url, await _app_token(http, info), **{"$filter": odata_filter})
    assert status == 400
    assert body["error"]["code"] == "BadRequest"
    assert "innerError" in body["error"]


async def test_no_filter_lists_the_organizers_meetings(
    http: aiohttp.ClientSession, info: SandboxInfo, control: Control
) -> None:
    meeting = await control.meeting()
    await control.meeting()
    url = f"{info.graph_base_url}/users/{_oid(meeting)}/onlineMeetings"
    status, body = await _graph_get(http, url, await _app_token(http, info))
    assert status == 200
    assert "onlineMeetings" in body["@odata.context"]
    assert [m["id"] for m in body["value"]] == [meeting["id"]]


async def test_openid_configuration_points_at_the_sandbox(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    url = f"{info.authority_host}/{info.tenant_id}/v2.0/.well-known/openid-configuration"
    async with http.get(url) as resp:
        assert resp.status == 200
        config = await resp.json()
    assert config["token_endpoint"] == f"{info.authority_host}/{info.tenant_id}/oauth2/v2.0/token"
    for key in ("issuer", "authorization_endpoint", "jwks_uri"):
        assert config[key].startswith(info.authority_host + "/"), key
    async with http.get(config["jwks_uri"]) as resp:
        assert resp.status == 200 and (await resp.json()) == {"keys": []}
    async with http.get(f"{info.authority_host}/not-our-tenant/v2.0/.well-known/openid-configuration") as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_tenant"


async def test_instance_discovery_vouches_only_for_the_sandbox(http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    url = f"{info.authority_host}/common/discovery/instance"
    ours = f"{info.authority_host}/{info.tenant_id}/oauth2/v2.0/authorize"
    async with http.get(url, params={"api-version": "1.1", "authorization_endpoint": ours}) as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["tenant_discovery_endpoint"] == (
        f"{info.authority_host}/{info.tenant_id}/v2.0/.well-known/openid-configuration"
    )
    elsewhere = f"https://login.example.com/{info.tenant_id}/oauth2/v2.0/authorize"
    async with http.get(url, params={"api-version": "1.1", "authorization_endpoint": elsewhere}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_instance"
