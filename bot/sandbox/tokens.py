"""JWT-shaped tokens the sandbox issues and verifies: ACS user access tokens and Graph app tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import jwt

from .errors import SandboxError, unauthorized
from .util import now

ACS_SCOPES = frozenset({"chat", "voip", "chat.join", "chat.join.limited", "voip.join"})
GRAPH_AUDIENCE = "https://graph.microsoft.com"
_ACS_AUDIENCE = "urn:sandbox:acs"
TOKEN_EXPIRED = "The access token has expired."


@dataclass(frozen=True)
class AcsClaims:
    identity: str
    scopes: frozenset[str]
    generation: int
    expires_on: float


class TokenIssuer:
    """Signs and verifies the sandbox's tokens with one HMAC key (the real service uses RSA; clients don't check)."""

    def __init__(self, signing_key: bytes, resource_id: str) -> None:
        self._key = signing_key
        self._resource_id = resource_id

    def issue_acs(self, identity: str, scopes: list[str], lifetime_s: int, generation: int) -> tuple[str, float]:
        issued = now()
        expires = int(issued + lifetime_s)
        claims = {
            "sub": identity,
            "skypeid": identity.removeprefix("8:"),
            "acsScope": ",".join(scopes),
            "resourceId": self._resource_id,
            "gen": generation,
            "aud": _ACS_AUDIENCE,
            "iat": int(issued),
            "exp": expires,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._key, algorithm="HS256"), float(expires)

    def verify_acs(self, token: str) -> AcsClaims:
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], audience=_ACS_AUDIENCE)
        except jwt.ExpiredSignatureError as exc:
            raise unauthorized(TOKEN_EXPIRED) from exc
        except jwt.PyJWTError as exc:
            raise unauthorized("The access token is not valid.") from exc
        scopes = frozenset(s for s in str(claims.get("acsScope", "")).split(",") if s)
        return AcsClaims(str(claims["sub"]), scopes, int(claims.get("gen", 0)), float(claims["exp"]))

    def issue_graph(self, tenant_id: str, client_id: str, lifetime_s: int = 3600) -> tuple[str, int]:
        issued = int(now())
        claims = {
            "aud": GRAPH_AUDIENCE,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "tid": tenant_id,
            "appid": client_id,
            "roles": ["OnlineMeetings.Read.All"],
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime_s,
        }
        return jwt.encode(claims, self._key, algorithm="HS256"), lifetime_s

    def verify_graph(self, token: str, tenant_id: str) -> None:
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], audience=GRAPH_AUDIENCE)
        except jwt.PyJWTError as exc:
            raise SandboxError(
                401, "InvalidAuthenticationToken", "Access token validation failure.", shape="graph"
            ) from exc
        if claims.get("tid") != tenant_id:
            raise SandboxError(401, "InvalidAuthenticationToken", "Token is for another tenant.", shape="graph")


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
