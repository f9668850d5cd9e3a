"""Request helpers shared by the sandbox's HTTP handlers: JSON bodies, ACS callers, api-version checks."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import SandboxError, bad_request, unauthorized
from .keys import WORLD
from .tokens import AcsClaims, bearer_token
from .util import JsonDict


async def json_body(request: web.Request, *, required: bool = True) -> JsonDict:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise bad_request("A JSON body is required.")
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"The body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object.")
    return body


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)


def acs_caller(request: web.Request, scope: str) -> AcsClaims:
    """The ACS identity behind a request's bearer token, with the scope the operation needs."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise unauthorized("A Bearer access token is required.")
    return request.app[WORLD].authenticate(token, scope)


def require_api_version(request: web.Request, *versions: str) -> None:
    version = request.query.get("api-version")
    if version is None:
        raise SandboxError(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
    if versions and version not in versions:
        raise SandboxError(
            400,
            "UnsupportedApiVersion",
            f"api-version {version} is not supported here; use {', '.join(versions)}.",
        )


def str_field(body: JsonDict, name: str, *, required: bool = True, default: str | None = None) -> str | None:
    value = body.get(name, default)
    if value is None:
        if required:
            raise bad_request(f"{name} is required.")
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string.")
    return value


def int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise bad_request(f"{name} must be an integer.") from exc
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}.")
    return value
