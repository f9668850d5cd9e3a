"""How the bridge signs in to its ACS resource: the access key of a connection string, or Entra ID."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from azure.core.credentials import AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

from bot.config import AcsSection

ACS_SCOPE = "https://communication.azure.com//.default"
"""The scope the identity and SMS SDKs ask Entra ID for (the double slash is theirs)."""


def parse_connection_string(connection_string: str) -> tuple[str, str]:
    """(endpoint, access key) of endpoint=https://...;accesskey=...; ValueError naming what is missing."""
    parts: dict[str, str] = {}
    for part in connection_string.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            # The key is base64 and may end in '=': only the first '=' separates.
            parts[key.strip().lower()] = value.strip()
    endpoint, key = parts.get("endpoint", ""), parts.get("accesskey", "")
    if not endpoint or not key:
        raise ValueError("an ACS connection string reads endpoint=https://...;accesskey=...")
    return endpoint, key


@dataclass(frozen=True)
class AcsAuth:
    """The resource's endpoint and what signs requests to it: the access key (HMAC) or an Entra ID credential.

    The identity and SMS clients share one; chat never uses it (a chat client signs with the user's own ACS token).
    Whoever builds an Entra credential owns it and closes it with `close()`.
    """

    endpoint: str
    key: str | None = None
    credential: AsyncTokenCredential | None = None

    @classmethod
    def from_connection_string(cls, connection_string: str) -> AcsAuth:
        endpoint, key = parse_connection_string(connection_string)
        return cls(endpoint, key=key)

    @classmethod
    def entra(
        cls,
        endpoint: str,
        kind: Literal["default", "client_secret"],
        *,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        authority: str | None = None,
        ca_file: str | None = None,
    ) -> AcsAuth:
        """Entra ID sign-in: DefaultAzureCredential, or an app registration's client secret.

        `ca_file` is trusted by the credential too: a managed identity endpoint or an authority behind the same
        TLS-inspecting proxy (or the sandbox) as the resource.
        """
        options: dict[str, str] = {"connection_verify": ca_file} if ca_file else {}
        credential: AsyncTokenCredential
        if kind == "default":
            credential = DefaultAzureCredential(**options)
        else:
            if not (tenant_id and client_id and client_secret):
                raise ValueError("the client secret sign-in needs tenant_id, client_id and client_secret")
            if authority:
                options["authority"] = authority
            credential = ClientSecretCredential(tenant_id, client_id, client_secret, **options)
        return cls(endpoint, credential=credential)

    @property
    def sdk_endpoint(self) -> str:
        """The endpoint as the SDK clients take it: their HMAC policy signs the host with whatever follows it, and
        their own connection string parser drops the trailing slash."""
        return self.endpoint.rstrip("/")

    @property
    def signer(self) -> AsyncTokenCredential | AzureKeyCredential:
        """What the SDK clients take as their credential."""
        if self.credential is not None:
            return self.credential
        assert self.key is not None
        return AzureKeyCredential(self.key)

    @property
    def uses_entra(self) -> bool:
        return self.credential is not None

    async def close(self) -> None:
        if self.credential is not None:
            await self.credential.close()


def acs_auth(acs: AcsSection) -> AcsAuth:
    """The sign-in the settings describe (they were validated: exactly one way in is configured)."""
    if acs.connection_string is not None:
        return AcsAuth.from_connection_string(acs.connection_string.get_secret_value())
    if acs.endpoint is None or acs.credential is None:
        raise ValueError("no ACS resource is configured (acs.connection_string, or acs.endpoint with a credential)")
    return AcsAuth.entra(
        acs.endpoint,
        acs.credential,
        tenant_id=acs.tenant_id,
        client_id=acs.client_id,
        client_secret=acs.client_secret.get_secret_value() if acs.client_secret is not None else None,
        authority=acs.authority,
        ca_file=acs.ca_file,
    )
