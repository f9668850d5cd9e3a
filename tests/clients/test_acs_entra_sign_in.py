"""The bridge's identity and SMS clients signed in with Entra ID (DefaultAzureCredential through the managed identity
endpoint, a client secret) against the sandbox's ACS resource, through the real azure-identity and ACS SDKs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity.aio import ManagedIdentityCredential

from bot.acs.auth import ACS_SCOPE, AcsAuth, acs_auth
from bot.acs.identity import IdentityService
from bot.acs.sms import AcsSmsGateway
from bot.config import AcsSection
from bot.errors import AuthError
from bot.sandbox import SandboxInfo
from tests.support.acs import decode_unverified
from tests.support.sandbox import Control

pytestmark = pytest.mark.usefixtures("control")
PHONE = "+15551239001"
# Every variable a credential of DefaultAzureCredential reads before the managed identity is tried.
_OTHER_SIGN_INS = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE")


@pytest.fixture
def managed_identity(monkeypatch: pytest.MonkeyPatch, info: SandboxInfo) -> None:
    """The process runs where a managed identity is offered, App Service style: the sandbox's endpoint."""
    for name in (*_OTHER_SIGN_INS, "IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "AZURE_TOKEN_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", info.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", info.identity_header)


@pytest.fixture
async def default_auth(managed_identity: None, info: SandboxInfo) -> AsyncIterator[AcsAuth]:
    auth = AcsAuth.entra(info.endpoint, "default", ca_file=info.ca_file)
    yield auth
    await auth.close()


def _secret_auth(info: SandboxInfo, secret: str | None = None) -> AcsAuth:
    return AcsAuth.entra(
        info.endpoint,
        "client_secret",
        tenant_id=info.tenant_id,
        client_id=info.client_id,
        client_secret=secret if secret is not None else info.client_secret,
        authority=info.authority_host,
        ca_file=info.ca_file,
    )


async def test_default_credential_creates_an_identity_and_its_token_through_the_managed_identity(
    default_auth: AcsAuth, info: SandboxInfo
) -> None:
    async with IdentityService(default_auth, connection_verify=info.ca_file) as identities:
        identity = await identities.create_identity()
        token, expires_on = await identities.issue_token(identity)
        await identities.delete_identity(identity)
    assert identity.startswith("8:acs:")
    claims = decode_unverified(token)
    assert claims["sub"] == identity and set(claims["acsScope"].split(",")) == {"chat", "voip"}
    assert expires_on > datetime.now(UTC).timestamp()


async def test_the_managed_identity_token_is_for_the_resource_and_the_hosts_identity(
    managed_identity: None, info: SandboxInfo
) -> None:
    async with ManagedIdentityCredential(connection_verify=info.ca_file) as credential:
        token = await credential.get_token(ACS_SCOPE)
    claims = decode_unverified(token.token)
    assert claims["aud"] == "https://communication.azure.com"
    assert claims["tid"] == info.tenant_id and claims["idtyp"] == "app"
    assert token.expires_on > datetime.now(UTC).timestamp()


async def test_a_wrong_identity_header_is_refused_by_the_managed_identity_endpoint(
    monkeypatch: pytest.MonkeyPatch, managed_identity: None, info: SandboxInfo
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    async with ManagedIdentityCredential(connection_verify=info.ca_file) as credential:
        with pytest.raises(ClientAuthenticationError, match="X-IDENTITY-HEADER"):
            await credential.get_token(ACS_SCOPE)


async def test_client_secret_credential_sends_a_text(info: SandboxInfo, control: Control) -> None:
    auth = _secret_auth(info)
    try:
        async with AcsSmsGateway(auth, info.sms_number, connection_verify=info.ca_file) as gateway:
            message_id = await gateway.send(PHONE, "signed in with Entra ID", key="k-1", first_sent=datetime.now(UTC))
    finally:
        await auth.close()
    inbox = await control.ok("GET", f"/sandbox/v1/phones/%2B{PHONE[1:]}/sms")
    assert [(m["messageId"], m["message"]) for m in inbox["value"]] == [(message_id, "signed in with Entra ID")]


async def test_a_wrong_client_secret_is_our_auth_error(info: SandboxInfo) -> None:
    auth = _secret_auth(info, secret="not-the-secret")
    try:
        async with IdentityService(auth, connection_verify=info.ca_file) as identities:
            with pytest.raises(AuthError, match="authentication failed"):
                await identities.create_identity()
    finally:
        await auth.close()


async def test_the_settings_pick_the_sign_in(managed_identity: None, info: SandboxInfo) -> None:
    by_key = acs_auth(AcsSection.model_validate({"connection_string": info.connection_string}))
    entra = acs_auth(AcsSection.model_validate({"endpoint": info.endpoint, "credential": "default"}))
    try:
        assert by_key.key is not None and not by_key.uses_entra and by_key.endpoint == info.endpoint
        assert entra.uses_entra and entra.key is None and entra.endpoint == info.endpoint
    finally:
        await entra.close()
