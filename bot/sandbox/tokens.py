"""JWT-shaped tokens the sandbox issues and verifies: ACS user access tokens and Entra ID app tokens (Graph, ACS)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import jwt

from .errors import SandboxError, unauthorized
from .util import now

ACS_SCOPES = frozenset({"chat", "voip", "chat.join", "chat.join.limited", "voip.join"})
GRAPH_AUDIENCE = "https://graph.microsoft.com"
ACS_RESOURCE_AUDIENCE = "https://communication.azure.com"
"""The audience of Entra ID tokens for an ACS resource's own APIs (identity, SMS)."""
TEAMS_USER_SCOPES = (
    "https://auth.msft.communication.azure.com/Teams.ManageCalls",
    "https://auth.msft.communication.azure.com/Teams.ManageChats",
)
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

    def issue_entra(
        self, audience: str, tenant_id: str, app_id: str, lifetime_s: int = 3600, roles: list[str] | None = None
    ) -> tuple[str, int]:
        """An Entra ID app-only token for `audience`, as the client-credentials and managed identity flows give."""
        issued = int(now())
        claims: dict[str, object] = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "tid": tenant_id,
            "appid": app_id,
            "oid": app_id,
            "idtyp": "app",
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime_s,
        }
        if roles:
            claims["roles"] = roles
        return jwt.encode(claims, self._key, algorithm="HS256"), lifetime_s

    def issue_graph(self, tenant_id: str, client_id: str, lifetime_s: int = 3600) -> tuple[str, int]:
        return self.issue_entra(GRAPH_AUDIENCE, tenant_id, client_id, lifetime_s, ["OnlineMeetings.Read.All"])

    def verify_graph(self, token: str, tenant_id: str) -> None:
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], audience=GRAPH_AUDIENCE)
        except jwt.PyJWTError as exc:
            raise SandboxError(
                401, "InvalidAuthenticationToken", "Access token validation failure.", shape="graph"
            ) from exc
        if claims.get("tid") != tenant_id:
            raise SandboxError(401, "InvalidAuthenticationToken", "Token is for another tenant.", shape="graph")

    def issue_teams_user(self, tenant_id: str, app_id: str, object_id: str, lifetime_s: int) -> tuple[str, int]:
        """An Entra ID token of a Teams user for ACS (delegated: Teams.ManageCalls and Teams.ManageChats), as a
        public client app signing the user in would get it."""
        issued = int(now())
        claims = {
            "aud": ACS_RESOURCE_AUDIENCE,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "tid": tenant_id,
            "appid": app_id,
            "oid": object_id,
            "idtyp": "user",
            "scp": " ".join(TEAMS_USER_SCOPES),
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime_s,
        }
        return jwt.encode(claims, self._key, algorithm="HS256"), issued + lifetime_s

    def verify_teams_user(self, token: str, tenant_id: str) -> tuple[str, str, int]:
        """(app id, user object id, expiry) of a valid Teams user token; 401 InvalidAccessToken otherwise."""
        invalid = SandboxError(401, "InvalidAccessToken", "Provided access token is not valid.")
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], audience=ACS_RESOURCE_AUDIENCE)
        except jwt.PyJWTError as exc:
            raise invalid from exc
        scopes = set(str(claims.get("scp", "")).split())
        if claims.get("idtyp") != "user" or not scopes & set(TEAMS_USER_SCOPES) or claims.get("tid") != tenant_id:
            raise invalid
        return str(claims.get("appid", "")), str(claims.get("oid", "")), int(claims["exp"])

    def verify_resource(self, token: str, tenant_id: str) -> str:
        """The app id of a valid Entra ID token for the ACS resource; 401 otherwise (an ACS user token too)."""
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], audience=ACS_RESOURCE_AUDIENCE)
        except jwt.ExpiredSignatureError as exc:
            raise unauthorized("The Entra ID access token has expired.") from exc
        except jwt.PyJWTError as exc:
            raise unauthorized(
                f"The Entra ID access token is not valid for this resource (audience {ACS_RESOURCE_AUDIENCE})."
            ) from exc
        if str(claims.get("tid", "")).lower() != tenant_id.lower():
            raise unauthorized("The Entra ID access token is for another tenant than this resource's.")
        if claims.get("idtyp") == "user":
            raise unauthorized("A Teams user's token is exchanged at /teamsUser/:exchangeAccessToken, not used here.")
        return str(claims.get("appid", ""))


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
