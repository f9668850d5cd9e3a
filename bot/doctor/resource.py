"""The doctor's checks of the ACS resource: its endpoint answers, and the bridge's sign-in is accepted."""

from __future__ import annotations

import ssl

import aiohttp

from ..acs.identity import IdentityService
from ..config import Settings
from ..errors import AuthError, BridgeError, TransientError
from .report import Step, failed, passed

ENDPOINT = "ACS endpoint reachable"
CREDENTIAL = "credential accepted"
TIMEOUT_S = 10.0


def tls(ca_file: str | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


async def endpoint_reachable(settings: Settings, http: aiohttp.ClientSession) -> Step:
    endpoint = settings.acs.endpoint
    assert endpoint is not None
    try:
        # Any HTTP answer means the service is there, as the readiness check holds too.
        async with http.get(endpoint, ssl=tls(settings.acs.ca_file), timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)):
            return passed(ENDPOINT, f"{endpoint} answers")
    except aiohttp.ClientConnectorCertificateError as exc:
        return failed(
            ENDPOINT,
            f"{endpoint}: its TLS certificate is not trusted ({exc.certificate_error})",
            "behind a TLS-inspecting proxy, give its CA bundle as acs.ca_file",
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        return failed(
            ENDPOINT,
            f"{endpoint} does not answer ({type(exc).__name__}: {exc})",
            "check that acs.endpoint (or endpoint= in the connection string) names your resource, "
            "https://<resource>.communication.azure.com/, and that this host reaches it (DNS, proxy, firewall)",
        )


def _credential_fix(settings: Settings, error: BridgeError) -> str:
    forbidden = "(HTTP 403)" in str(error)
    if settings.acs.connection_string is not None:
        return (
            "the access key in acs.connection_string is not (or no longer) the resource's: copy the connection "
            "string again from the resource's Keys page in the Azure portal"
        )
    role = (
        'give the identity a data-plane role on the resource (e.g. "Communication and Email Service Owner", '
        "Access control (IAM) in the portal)"
    )
    if forbidden:
        return role
    if settings.acs.credential == "default":
        return (
            "DefaultAzureCredential found no identity that signs in: turn the host's managed identity on (or set "
            f"AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, or sign in with az login); then {role}"
        )
    return f"check acs.tenant_id, acs.client_id and acs.client_secret (a secret expires); then {role}"


async def credential_accepted(settings: Settings, identities: IdentityService) -> Step:
    """Create a throwaway identity, issue it a chat and voip token, and delete it again."""
    try:
        identity = await identities.create_identity()
    except BridgeError as exc:
        return _refused(settings, "creating an identity", exc)
    try:
        await identities.issue_token(identity)
    except BridgeError as exc:
        return _refused(settings, "issuing a chat and voip token", exc)
    finally:
        try:
            await identities.delete_identity(identity)
        except BridgeError:
            pass  # a leftover identity with no token costs nothing; the failure that matters is reported
    return passed(
        CREDENTIAL, f"signed in with {settings.acs.sign_in}: created an identity, issued chat+voip, deleted it"
    )


def _refused(settings: Settings, what: str, exc: BridgeError) -> Step:
    if isinstance(exc, TransientError):
        return failed(CREDENTIAL, f"{what} failed for now: {exc}", "the service is failing or throttling: try again")
    kind = "refused" if isinstance(exc, AuthError) else "failed"
    return failed(CREDENTIAL, f"{what} was {kind}: {exc}", _credential_fix(settings, exc))
