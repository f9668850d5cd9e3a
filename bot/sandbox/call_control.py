"""The control API's call switches: end a leg with any reason, refuse joins as interop does, grace, token lifetime."""

from __future__ import annotations

from aiohttp import web

from .calling_standin import AGENTS
from .errors import bad_request
from .keys import WORLD
from .meetings import INTEROP_NOT_ENABLED, INTEROP_NOT_ENABLED_RESOURCE, REMOVED, REMOVED_FROM_MEETING, Meeting
from .util import JsonDict
from .web_util import json_body, json_response, str_field

routes = web.RouteTableDef()
MAX_GRACE_S = 600.0
MIN_TOKEN_S, MAX_TOKEN_S = 2, 86_400
REFUSALS = (INTEROP_NOT_ENABLED[1], INTEROP_NOT_ENABLED_RESOURCE[1])
REMOVAL_SUB_CODES = (REMOVED[1], REMOVED_FROM_MEETING[1])


def _meeting(request: web.Request) -> Meeting:
    return request.app[WORLD].meeting(request.match_info["meeting"])


def _int(body: JsonDict, name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise bad_request(f"{name} must be a whole number from 0 to 2147483647.")
    return value


@routes.delete("/sandbox/v1/meetings/{meeting}/participants/{participant}")
async def remove_participant(request: web.Request) -> web.Response:
    """The organizer removes someone: an ACS leg ends 0/5000 (or 0/5300 with ?subCode=5300)."""
    raw = request.query.get("subCode", str(REMOVED[1]))
    if raw not in {str(code) for code in REMOVAL_SUB_CODES}:
        raise bad_request(f"subCode must be one of {', '.join(map(str, REMOVAL_SUB_CODES))}.")
    request.app[WORLD].remove(_meeting(request), request.match_info["participant"], int(raw))
    return web.Response(status=204)


@routes.post("/sandbox/v1/meetings/{meeting}/participants/{participant}/end")
async def end_leg(request: web.Request) -> web.Response:
    """The service ends an ACS leg with any call-end reason: {"code": 490, "subCode": 4525, "reason"?: "..."}."""
    body = await json_body(request)
    end_reason = (_int(body, "code"), _int(body, "subCode"))
    reason = str_field(body, "reason", required=False)
    world = request.app[WORLD]
    leg = _meeting(request).legs.get(request.match_info["participant"])
    if leg is None:
        raise bad_request(f"{request.match_info['participant']} is no ACS call leg of this meeting.")
    world.end_leg(leg, end_reason, reason or f"ended by the service ({end_reason[0]}/{end_reason[1]})")
    return json_response(leg.snapshot())


def _settings(request: web.Request) -> JsonDict:
    settings = request.app[WORLD].call_settings
    return {"graceSeconds": settings.grace_s, "interopRefusal": settings.interop_refusal}


@routes.get("/sandbox/v1/call-settings")
async def get_call_settings(request: web.Request) -> web.Response:
    return json_response(_settings(request))


@routes.put("/sandbox/v1/call-settings")
async def put_call_settings(request: web.Request) -> web.Response:
    """Any of {"graceSeconds": 0-600, "interopRefusal": null | 5221 | 5222}; what is left out stays as it is."""
    body = await json_body(request)
    unknown = sorted(set(body) - {"graceSeconds", "interopRefusal"})
    if unknown:
        raise bad_request(f"Unknown setting(s) {', '.join(unknown)}; give graceSeconds or interopRefusal.")
    settings = request.app[WORLD].call_settings
    grace = body.get("graceSeconds", settings.grace_s)
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= MAX_GRACE_S:
        raise bad_request(f"graceSeconds must be a number of seconds from 0 to {MAX_GRACE_S:g}.")
    refusal = body.get("interopRefusal", settings.interop_refusal)
    if refusal is not None and refusal not in REFUSALS:
        raise bad_request("interopRefusal must be null (interop enabled), 5221 (tenant) or 5222 (resource).")
    settings.grace_s = float(grace)
    settings.interop_refusal = refusal
    request.app[AGENTS].regrace()  # a new grace applies to the legs lingering already, from when they vanished
    return json_response(_settings(request))


@routes.get("/sandbox/v1/token-settings")
async def get_token_settings(request: web.Request) -> web.Response:
    return json_response({"lifetimeSeconds": request.app[WORLD].token_lifetime_s})


@routes.put("/sandbox/v1/token-settings")
async def put_token_settings(request: web.Request) -> web.Response:
    """{"lifetimeSeconds": n} makes every ACS token issued from now on last n seconds; null goes back to
    expiresInMinutes as asked."""
    body = await json_body(request)
    lifetime = body.get("lifetimeSeconds")
    if lifetime is not None and (
        not isinstance(lifetime, int) or isinstance(lifetime, bool) or not MIN_TOKEN_S <= lifetime <= MAX_TOKEN_S
    ):
        raise bad_request(f"lifetimeSeconds must be null or a whole number from {MIN_TOKEN_S} to {MAX_TOKEN_S}.")
    request.app[WORLD].token_lifetime_s = lifetime
    return json_response({"lifetimeSeconds": lifetime})
