"""How the resource's identity and SMS APIs authenticate a caller: an HMAC signature by the access key, or Entra ID."""

from __future__ import annotations

from aiohttp import web

from .hmac_auth import verify_hmac
from .keys import WORLD
from .tokens import bearer_token


def verify_caller(request: web.Request, body: bytes) -> None:
    """Raise 401 unless the request is signed by the access key or carries a valid Entra ID token for the resource."""
    world = request.app[WORLD]
    token = bearer_token(request.headers.get("Authorization"))
    if token is not None:
        world.tokens.verify_resource(token, world.credentials.tenant_id)
        return
    verify_hmac(request, body, world.credentials.access_key_bytes)
