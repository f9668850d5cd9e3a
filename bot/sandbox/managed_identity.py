"""The host's managed identity endpoint, App Service style (IDENTITY_ENDPOINT, IDENTITY_HEADER), for azure-identity."""

from __future__ import annotations

import hmac

from aiohttp import web

from .errors import SandboxError
from .keys import WORLD
from .tokens import ACS_RESOURCE_AUDIENCE, GRAPH_AUDIENCE
from .util import now
from .web_util import json_response

routes = web.RouteTableDef()
PATH = "/msi/token"
API_VERSION = "2019-08-01"
TOKEN_LIFETIME_S = 3600
# Resources, as azure-identity turns a scope into one (…/.default stripped), and the audience of their tokens.
_RESOURCES = {
    "https://communication.azure.com": ACS_RESOURCE_AUDIENCE,
    "https://graph.microsoft.com": GRAPH_AUDIENCE,
}


def _error(status: int, code: str, message: str) -> SandboxError:
    return SandboxError(status, code, message, shape="oauth")


@routes.get(PATH)
async def token(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    creds = world.credentials
    header = request.headers.get("X-IDENTITY-HEADER", "")
    if not hmac.compare_digest(header.encode(), creds.managed_identity_header.encode()):
        raise _error(401, "invalid_request", "The X-IDENTITY-HEADER is missing or not this host's IDENTITY_HEADER.")
    if request.query.get("api-version") != API_VERSION:
        raise _error(400, "invalid_request", f"api-version must be {API_VERSION}.")
    resource = request.query.get("resource", "")
    audience = _RESOURCES.get(resource.rstrip("/"))
    if audience is None:
        raise _error(
            400,
            "invalid_resource",
            f"AADSTS500011: The resource principal named {resource or '(none)'} was not found in the tenant.",
        )
    wanted = request.query.get("client_id")
    if wanted is not None and wanted.lower() != creds.managed_identity_id.lower():
        raise _error(400, "invalid_request", f"No user-assigned identity with client id {wanted} is on this host.")
    access_token, lifetime = world.tokens.issue_entra(
        audience, creds.tenant_id, creds.managed_identity_id, TOKEN_LIFETIME_S
    )
    return json_response(
        {
            "access_token": access_token,
            "expires_on": str(int(now()) + lifetime),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": creds.managed_identity_id,
        }
    )
