"""What Microsoft Graph ids look like (an organizer's object id or user principal name, an onlineMeeting id); pure.

Each id becomes one segment of a Graph request's path. The SDK's URI template percent-encodes reserved characters
("/" becomes %2F) but not the unreserved ".", so an id of "." or ".." is a dot segment that URL normalisation
removes: the request would go to another resource (/v1.0/onlineMeetings/x, /v1.0) and its error text would come
back. Only ids of the shapes below are sent.
"""

from __future__ import annotations

import re

ORGID_PREFIX = "8:orgid:"
"""How Teams writes an Entra user as a chat participant; taken off an organizer id given that way."""
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# Entra allows letters, digits and ' . - _ ! # ^ ~ before the @, at most 64 of them; the domain is a DNS name.
_UPN = re.compile(r"[A-Za-z0-9'._!#^~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")
# Graph's onlineMeeting ids are base64 of "1*<organizer>*0**<thread id>" (standard or URL-safe alphabet).
_MEETING_ID = re.compile(r"[A-Za-z0-9+/_-]{1,2000}={0,2}")


class GraphIdError(ValueError):
    """The text is not an id of the kind asked for; the message says which shapes are."""


def organizer_id(value: str) -> str:
    """The organizer's id as Graph takes it: a GUID, or a user principal name (name@domain); GraphIdError else."""
    text = value.strip().removeprefix(ORGID_PREFIX)
    if _GUID.fullmatch(text) or _UPN.fullmatch(text):
        return text
    raise GraphIdError("must be the organizer's Entra object id (a GUID) or user principal name (name@domain)")


def meeting_id(value: str) -> str:
    """A Graph onlineMeeting id (base64 text, as Graph lists it); GraphIdError else."""
    text = value.strip()
    if _MEETING_ID.fullmatch(text) and any(ch.isalnum() for ch in text):
        return text
    raise GraphIdError("must be a Graph onlineMeeting id (letters, digits, + / _ - and = padding)")
