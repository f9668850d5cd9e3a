"""Entra ID client-credentials sign-in and the Microsoft Graph onlineMeetings lookup, as the sandbox serves them."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable

from aiohttp import web
from yarl import URL

from .errors import SandboxError
from .keys import INFO, WORLD
from .meetings import Meeting
from .tokens import ACS_RESOURCE_AUDIENCE, bearer_token
from .util import JsonDict
from .web_util import json_response
from .world import World

routes = web.RouteTableDef()

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# The ACS SDKs ask for the resource with a double slash; Entra takes either spelling for the same resource.
ACS_SCOPES = frozenset({"https://communication.azure.com//.default", "https://communication.azure.com/.default"})
TOKEN_LIFETIME_S = 3600
# MSAL may append these to any request; Entra ignores them for client credentials.
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
_FORM = "application/x-www-form-urlencoded"

# OData: `<property> eq '<string literal>'`, where '' inside the literal stands for one quote.
_FILTER = re.compile(r"\s*(?P<prop>[A-Za-z][A-Za-z0-9/]*)\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*", re.IGNORECASE)
_FILTERABLE: dict[str, Callable[[Meeting], str]] = {
    "joinweburl": lambda m: m.join_web_url,
    "joinmeetingidsettings/joinmeetingid": lambda m: m.join_meeting_id,
}


def _base(request: web.Request) -> str:
    """The sandbox's own origin, so discovery documents send clients back here and never to Microsoft."""
    return str(request.app[INFO].get("authorityHost") or request.url.origin())


def _oauth_error(status: int, code: str, message: str) -> SandboxError:
    return SandboxError(status, code, message, shape="oauth")


def _graph_error(status: int, code: str, message: str) -> SandboxError:
    return SandboxError(status, code, message, shape="graph")


def _is_our_tenant(world: World, tenant: str) -> bool:
    return tenant.lower() == world.credentials.tenant_id.lower()


# Entra ID ----------------------------------------------------------------------------------------


@routes.post("/{tenant}/oauth2/v2.0/token")
async def token(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    creds = world.credentials
    if request.content_type != _FORM:
        raise _oauth_error(400, "invalid_request", f"AADSTS900144: The request body must be {_FORM}.")
    form = await request.post()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    for name in ("grant_type", "client_id", "scope"):
        if not params.get(name):
            raise _oauth_error(
                400, "invalid_request", f"AADSTS900144: The request body must contain the parameter '{name}'."
            )
    if params["grant_type"] != "client_credentials":
        raise _oauth_error(
            400, "unsupported_grant_type", f"AADSTS70003: The grant type '{params['grant_type']}' is not supported."
        )
    if not _is_our_tenant(world, request.match_info["tenant"]):
        raise _oauth_error(401, "invalid_client", f"AADSTS90002: Tenant '{request.match_info['tenant']}' not found.")
    if params["client_id"].lower() != creds.client_id.lower():
        raise _oauth_error(
            401, "invalid_client", f"AADSTS700016: Application '{params['client_id']}' was not found in the tenant."
        )
    secret = params.get("client_secret", "")
    if not hmac.compare_digest(secret.encode("utf-8"), creds.client_secret.encode("utf-8")):
        raise _oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
    scopes = set(params["scope"].split()) - _RESERVED_SCOPES
    if scopes == {GRAPH_SCOPE}:
        access_token, lifetime = world.tokens.issue_graph(creds.tenant_id, creds.client_id, TOKEN_LIFETIME_S)
    elif len(scopes) == 1 and scopes <= ACS_SCOPES:
        access_token, lifetime = world.tokens.issue_entra(
            ACS_RESOURCE_AUDIENCE, creds.tenant_id, creds.client_id, TOKEN_LIFETIME_S
        )
    else:
        raise _oauth_error(
            400,
            "invalid_scope",
            f"AADSTS1002012: The provided scope is not valid; use one of '{GRAPH_SCOPE}' or '{min(ACS_SCOPES)}'.",
        )
    return json_response(
        {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access_token},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@routes.get("/{tenant}/v2.0/.well-known/openid-configuration")
async def openid_configuration(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    tenant = request.match_info["tenant"]
    if not _is_our_tenant(world, tenant):
        # Entra answers an unknown tenant this way; MSAL turns any 4xx here into "check your tenant".
        raise _oauth_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found.")
    base, tid = _base(request), world.credentials.tenant_id
    host = URL(base).host or "127.0.0.1"
    return json_response(
        {
            "issuer": f"{base}/{tid}/v2.0",
            "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "scopes_supported": [GRAPH_SCOPE, *sorted(ACS_SCOPES)],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["HS256"],
            "claims_supported": ["aud", "iss", "iat", "nbf", "exp", "tid", "appid", "roles"],
            "request_uri_parameter_supported": False,
            "tenant_region_scope": "NA",
            "cloud_instance_name": host,
            "cloud_graph_host_name": host,
            "msgraph_host": URL(base).authority,
        }
    )


@routes.get("/{tenant}/discovery/v2.0/keys")
async def signing_keys(request: web.Request) -> web.Response:
    # The sandbox signs with a shared HMAC key, which must not be published; clients never verify app tokens.
    if not _is_our_tenant(request.app[WORLD], request.match_info["tenant"]):
        raise _oauth_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{request.match_info['tenant']}' not found.")
    return json_response({"keys": []})


@routes.get("/common/discovery/instance")
async def instance_discovery(request: web.Request) -> web.Response:
    endpoint = request.query.get("authorization_endpoint")
    if not endpoint:
        raise _oauth_error(400, "invalid_request", "AADSTS90014: The parameter 'authorization_endpoint' is missing.")
    base = URL(_base(request))
    asked = URL(endpoint)
    # Only this sandbox is a known instance: vouching for others would hide a misconfigured authority.
    if asked.scheme != "https" or asked.host != base.host or asked.port != base.port or len(asked.parts) < 2:
        raise _oauth_error(400, "invalid_instance", "AADSTS50049: Unknown or invalid instance.")
    tenant = asked.parts[1]
    host = base.host or "127.0.0.1"
    return json_response(
        {
            "tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
    )


# Microsoft Graph ---------------------------------------------------------------------------------


def _graph_world(request: web.Request) -> World:
    """The world, once the request carries a Graph token this sandbox issued for its tenant."""
    world = request.app[WORLD]
    access_token = bearer_token(request.headers.get("Authorization"))
    if access_token is None:
        raise _graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
    world.tokens.verify_graph(access_token, world.credentials.tenant_id)
    return world


def _organized_by(world: World, user_id: str) -> list[Meeting]:
    """Meetings of one organizer; the sandbox knows a user only as the organizer of some meeting."""
    oid = user_id.lower()
    meetings = [m for m in world.meetings.values() if m.organizer.object_id.lower() == oid]
    if not meetings:
        raise _graph_error(
            404,
            "Request_ResourceNotFound",
            f"Resource '{user_id}' does not exist or one of its queried reference-property objects are not present.",
        )
    return meetings


def parse_filter(text: str) -> tuple[Callable[[Meeting], str], str]:
    """The property getter and the literal of a supported `$filter`; 400 in Graph's shape otherwise."""
    match = _FILTER.fullmatch(text)
    if match is None:
        raise _graph_error(400, "BadRequest", f"Invalid filter clause: {text}")
    getter = _FILTERABLE.get(match["prop"].lower())
    if getter is None:
        raise _graph_error(
            400,
            "BadRequest",
            f"Filter on '{match['prop']}' is not supported; use JoinWebUrl or joinMeetingIdSettings/joinMeetingId.",
        )
    return getter, match["value"].replace("''", "'")


def _context(request: web.Request, user_id: str) -> str:
    return f"{_base(request)}/v1.0/$metadata#users('{user_id}')/onlineMeetings"


@routes.get("/v1.0/users/{user}/onlineMeetings")
async def list_online_meetings(request: web.Request) -> web.Response:
    world = _graph_world(request)
    user_id = request.match_info["user"]
    meetings = _organized_by(world, user_id)
    text = request.query.get("$filter")
    if text is not None:
        getter, value = parse_filter(text)
        # Graph compares the literal exactly: a link that differs in escaping or case finds nothing.
        meetings = [m for m in meetings if getter(m) == value]
    return json_response(
        {"@odata.context": _context(request, user_id), "value": [m.online_meeting_json() for m in meetings]}
    )


@routes.get("/v1.0/users/{user}/onlineMeetings/{meeting}")
async def get_online_meeting(request: web.Request) -> web.Response:
    world = _graph_world(request)
    user_id = request.match_info["user"]
    wanted = request.match_info["meeting"]
    meeting = next((m for m in _organized_by(world, user_id) if m.id == wanted), None)
    if meeting is None:
        raise _graph_error(404, "NotFound", f"Online meeting '{wanted}' was not found for user '{user_id}'.")
    body: JsonDict = {"@odata.context": _context(request, user_id) + "/$entity"}
    return json_response(body | meeting.online_meeting_json())


def setup(app: web.Application) -> None:
    """Nothing to attach: Graph tokens are self-contained and the meetings live in the world."""
