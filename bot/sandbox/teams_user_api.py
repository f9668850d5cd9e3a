"""The Teams user token exchange (POST /teamsUser/:exchangeAccessToken, with its errors) and a Teams user's sign-in."""

from __future__ import annotations

import uuid

from aiohttp import web

from .errors import SandboxError, bad_request
from .identity_api import API_VERSIONS
from .keys import WORLD
from .resource_auth import verify_caller
from .util import iso, now
from .web_util import json_body, json_response, require_api_version

routes = web.RouteTableDef()
TEAMS_TOKEN_SCOPES = ["chat", "voip"]
MAX_LIFETIME_S = 24 * 3600


def _validation(message: str, target: str) -> SandboxError:
    # The live service's 400: {"error": {"code": "ValidationError", "message", "target"}}.
    return SandboxError(400, "ValidationError", message, target=target)


def _guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _field(body: dict[str, object], name: str) -> str:
    value = body.get(name)
    return value if isinstance(value, str) else ""


@routes.post("/teamsUser/:exchangeAccessToken")
async def exchange(request: web.Request) -> web.Response:
    """A Teams user's Entra ID token (for this app and user) becomes an ACS token for 8:orgid:<user>, expiring with
    it. The service checks the token first, then the app id, then the user id, as its recorded answers show."""
    require_api_version(request, *API_VERSIONS)
    verify_caller(request, await request.read())
    body = await json_body(request)
    world = request.app[WORLD]
    app_id, object_id, expires = world.tokens.verify_teams_user(_field(body, "token"), world.credentials.tenant_id)
    wanted_app, wanted_user = _field(body, "appId"), _field(body, "userId")
    if not wanted_app:
        raise _validation("AppId: The AppId field is required.", "AppId")
    if not _guid(wanted_app):
        raise _validation("Provided AppId has invalid format.", "appId")
    if wanted_app.lower() != app_id.lower():
        raise _validation("AAD application is not the expected one.", "appId")
    if not wanted_user:
        raise _validation("UserId: The UserId field is required.", "UserId")
    if not _guid(wanted_user):
        raise _validation("Provided UserId has invalid format.", "userId")
    if wanted_user.lower() != object_id.lower():
        raise _validation("Provided AAD token issued for unexpected user.", "userId")
    identity = world.teams_identity(f"8:orgid:{object_id}")
    minutes = max(1, (expires - int(now())) // 60)
    token, expires_on = world.tokens.issue_acs(identity.id, TEAMS_TOKEN_SCOPES, minutes, identity.generation)
    return json_response({"token": token, "expiresOn": iso(expires_on)})


@routes.post("/sandbox/v1/teams-user-tokens")
async def sign_in(request: web.Request) -> web.Response:
    """Control: the Entra ID token a Teams user gets for ACS through the app `appId` (default: the sandbox's app);
    `lifetimeSeconds` may be negative for a token that has already expired."""
    body = await json_body(request)
    world = request.app[WORLD]
    user = _field(body, "userId").removeprefix("8:orgid:")
    if not _guid(user):
        raise bad_request("userId must be a Teams user's Entra object id (a GUID, 8:orgid: may precede it).")
    app_id = _field(body, "appId") or world.credentials.client_id
    lifetime = body.get("lifetimeSeconds", 3600)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or not -MAX_LIFETIME_S <= lifetime <= MAX_LIFETIME_S:
        raise bad_request(f"lifetimeSeconds must be a whole number between -{MAX_LIFETIME_S} and {MAX_LIFETIME_S}.")
    token, expires = world.tokens.issue_teams_user(world.credentials.tenant_id, app_id, user, lifetime)
    return json_response({"token": token, "expiresOn": iso(float(expires))}, status=201)
