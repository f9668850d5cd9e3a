"""Clock, id and timestamp helpers shared by the sandbox's modules."""

from __future__ import annotations

import base64
import math
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

JsonDict = dict[str, Any]


def now() -> float:
    """Whole milliseconds, the precision ACS timestamps have: a time read back from a response (a startTime, a
    cursor) then compares equal to the stored one instead of a rounding error away."""
    return math.floor(time.time() * 1000) / 1000


def iso(ts: float) -> str:
    """Format an epoch time the way ACS does: UTC, millisecond precision (truncated, never rounded up), Z."""
    ms = math.floor(round(ts * 1000, 3))
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso(value: str) -> float:
    """Parse an ISO 8601 time as clients send it (Z or offset, any fraction); ValueError if it is not one."""
    text = value.strip().replace(" ", "+")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.11's fromisoformat takes at most 6 fraction digits; .NET clients send 7.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def rfc1123(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def new_guid() -> str:
    return str(uuid.uuid4())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def acs_identifier(raw_id: str) -> JsonDict:
    """The CommunicationIdentifierModel for a raw id, as the chat API returns it."""
    if raw_id.startswith("8:acs:"):
        return {"rawId": raw_id, "communicationUser": {"id": raw_id}}
    for prefix, cloud in (("8:orgid:", "public"), ("8:dod:", "dod"), ("8:gcch:", "gcch")):
        if raw_id.startswith(prefix):
            return {
                "rawId": raw_id,
                "microsoftTeamsUser": {"userId": raw_id[len(prefix) :], "isAnonymous": False, "cloud": cloud},
            }
    if raw_id.startswith("8:teamsvisitor:"):
        return {
            "rawId": raw_id,
            "microsoftTeamsUser": {"userId": raw_id[len("8:teamsvisitor:") :], "isAnonymous": True},
        }
    if raw_id.startswith("4:"):
        return {"rawId": raw_id, "phoneNumber": {"value": raw_id[2:]}}
    return {"rawId": raw_id}


def raw_id_of(identifier: Any) -> str | None:
    """The raw id of a CommunicationIdentifierModel a client sent, or None if it names no one."""
    if not isinstance(identifier, dict):
        return None
    raw = identifier.get("rawId")
    if isinstance(raw, str) and raw:
        return raw
    user = identifier.get("communicationUser")
    if isinstance(user, dict) and isinstance(user.get("id"), str):
        return str(user["id"])
    teams = identifier.get("microsoftTeamsUser")
    if isinstance(teams, dict) and isinstance(teams.get("userId"), str):
        prefix = "8:teamsvisitor:" if teams.get("isAnonymous") else "8:orgid:"
        return prefix + str(teams["userId"])
    return None
