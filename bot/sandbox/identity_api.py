"""The ACS Identity API (2023-10-01): create and delete identities, issue and revoke tokens; HMAC or Entra ID."""

from __future__ import annotations

from aiohttp import web

from .keys import WORLD
from .limits import check_limit
from .resource_auth import verify_caller
from .util import iso
from .web_util import json_body, json_response, require_api_version

routes = web.RouteTableDef()
API_VERSIONS = ("2023-10-01", "2022-10-01", "2022-06-01", "2021-03-07")


async def _authenticated(request: web.Request) -> bytes:
    require_api_version(request, *API_VERSIONS)
    body = await request.read()
    verify_caller(request, body)
    return body


@routes.post("/identities")
async def create_identity(request: web.Request) -> web.Response:
    await _authenticated(request)
    check_limit(request, "identity.create", None, None)
    body = await json_body(request, required=False)
    world = request.app[WORLD]
    scopes = body.get("createTokenWithScopes")
    result: dict[str, object] = {}
    if scopes:
        # Validate before creating, so a bad request leaves no identity behind.
        probe = world.create_identity()
        try:
            token, expires = world.issue_token(probe.id, scopes, body.get("expiresInMinutes"))
        except Exception:
            world.identities.pop(probe.id, None)
            raise
        result = {"identity": {"id": probe.id}, "accessToken": {"token": token, "expiresOn": iso(expires)}}
    else:
        result = {"identity": {"id": world.create_identity().id}}
    return json_response(result, status=201)


@routes.post(r"/identities/{identity}/:issueAccessToken")
async def issue_token(request: web.Request) -> web.Response:
    await _authenticated(request)
    check_limit(request, "identity.token", None, None)
    body = await json_body(request)
    token, expires = request.app[WORLD].issue_token(
        request.match_info["identity"], body.get("scopes"), body.get("expiresInMinutes")
    )
    return json_response({"token": token, "expiresOn": iso(expires)})


@routes.post(r"/identities/{identity}/:revokeAccessTokens")
async def revoke_tokens(request: web.Request) -> web.Response:
    await _authenticated(request)
    request.app[WORLD].revoke_tokens(request.match_info["identity"])
    return web.Response(status=204)


@routes.delete("/identities/{identity}")
async def delete_identity(request: web.Request) -> web.Response:
    await _authenticated(request)
    request.app[WORLD].delete_identity(request.match_info["identity"])
    return web.Response(status=204)
