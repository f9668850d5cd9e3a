"""Parses Teams meeting join links (the long meetup-join link and the short /meet/ link); pure, no I/O."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

__all__ = ["JoinLinkError", "ParsedLink", "parse_join_link"]

MAX_LINK_LENGTH = 4096
TEAMS_HOSTS = frozenset({"teams.microsoft.com"})
_CONSUMER_HOSTS = frozenset({"teams.live.com"})
# Teams in the Microsoft 365 government clouds (GCC High, DoD) has hosts of its own; ACS interop is not available
# there. GCC (moderate) meetings use teams.microsoft.com and cannot be told apart by their link.
_GOVERNMENT_HOSTS = frozenset({"teams.microsoft.us", "gov.teams.microsoft.us", "dod.teams.microsoft.us"})
_SAFELINKS_SUFFIX = ".safelinks.protection.outlook.com"

_THREAD_ID = re.compile(r"19:[^\s/@]+@thread\.(?:v2|skype|tacv2)")
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_JOIN_MEETING_ID = re.compile(r"[0-9]{6,20}")
_PASSCODE = re.compile(r"[A-Za-z0-9._~\-]{1,64}")


class JoinLinkError(ValueError):
    """The text is not a Teams meeting join link the bridge understands; the message says why."""


@dataclass(frozen=True)
class ParsedLink:
    """What a join link tells without asking anyone: a long link holds the thread, a short link only the ids."""

    url: str
    thread_id: str | None = None
    tenant_id: str | None = None
    organizer_id: str | None = None
    """The organizer's Entra object id (the `Oid` of the long link's context)."""
    join_meeting_id: str | None = None
    passcode: str | None = None

    @property
    def is_short(self) -> bool:
        return self.thread_id is None


def _split(text: str) -> SplitResult:
    # People paste links without the scheme into SMS; everything else must say https.
    candidate = text if "://" in text else "https://" + text
    try:
        parts = urlsplit(candidate)
        port = parts.port
    except ValueError as exc:
        raise JoinLinkError(f"not a valid URL: {exc}") from exc
    if parts.scheme.lower() != "https":
        raise JoinLinkError(f"a Teams join link starts with https://, not {parts.scheme or 'nothing'}://")
    if port not in (None, 443):
        raise JoinLinkError(f"a Teams join link has no port number (found {port})")
    return parts


def _unwrap_safelinks(parts: SplitResult) -> str | None:
    """The link Outlook's Safe Links wrapped, if this is such a wrapper."""
    host = (parts.hostname or "").lower()
    if not host.endswith(_SAFELINKS_SUFFIX):
        return None
    wrapped = parse_qs(parts.query).get("url")
    if not wrapped:
        raise JoinLinkError("a Safe Links address without the link it wraps")
    return wrapped[0]


def _context(query: str) -> tuple[str | None, str | None]:
    """(tenant id, organizer object id) from the long link's `context` JSON; (None, None) without one."""
    values = parse_qs(query).get("context")
    if not values:
        return None, None
    try:
        data = json.loads(values[0])
    except (ValueError, RecursionError) as exc:
        raise JoinLinkError("the link's context is not valid JSON") from exc
    if not isinstance(data, dict):
        raise JoinLinkError("the link's context is not a JSON object")
    fields = {str(k).lower(): v for k, v in data.items()}
    found: list[str | None] = []
    for key, label in (("tid", "tenant id (Tid)"), ("oid", "organizer id (Oid)")):
        value = fields.get(key)
        if value is None:
            found.append(None)
        elif not isinstance(value, str) or not _GUID.fullmatch(value):
            raise JoinLinkError(f"the link's {label} is not a GUID")
        else:
            found.append(value)
    return found[0], found[1]


def _long_link(url: str, parts: SplitResult, segments: list[str]) -> ParsedLink:
    # /l/meetup-join/<thread id, %-escaped>/0 ; the trailing 0 is sometimes missing.
    if len(segments) not in (3, 4) or (len(segments) == 4 and not segments[3].isdigit()):
        raise JoinLinkError("a meetup-join link has the form /l/meetup-join/<thread>/0")
    thread_id = unquote(segments[2])
    if not _THREAD_ID.fullmatch(thread_id):
        raise JoinLinkError("the link does not name a meeting chat thread (19:...@thread.v2)")
    tenant, organizer = _context(parts.query)
    return ParsedLink(url=url, thread_id=thread_id, tenant_id=tenant, organizer_id=organizer)


def _short_link(url: str, parts: SplitResult, segments: list[str]) -> ParsedLink:
    if len(segments) != 2 or not _JOIN_MEETING_ID.fullmatch(segments[1]):
        raise JoinLinkError("a short Teams link has the form /meet/<meeting id digits>?p=<passcode>")
    passcodes = parse_qs(parts.query).get("p")
    passcode = passcodes[0] if passcodes else None
    if passcode is not None and not _PASSCODE.fullmatch(passcode):
        raise JoinLinkError("the link's passcode (p=) has characters a Teams passcode never has")
    return ParsedLink(url=url, join_meeting_id=segments[1], passcode=passcode)


def parse_join_link(text: str) -> ParsedLink:
    """Parse a Teams meeting join link, or raise JoinLinkError saying what is wrong with it."""
    url = text.strip()
    if not url:
        raise JoinLinkError("no link given")
    if len(url) > MAX_LINK_LENGTH:
        raise JoinLinkError(f"the link is longer than {MAX_LINK_LENGTH} characters")
    if any(ch.isspace() for ch in url):
        raise JoinLinkError("a link has no spaces in it")
    parts = _split(url)
    wrapped = _unwrap_safelinks(parts)
    if wrapped is not None:
        url = wrapped.strip()
        parts = _split(url)
    host = (parts.hostname or "").lower()
    if host in _CONSUMER_HOSTS:
        raise JoinLinkError("meetings of Teams for personal use (teams.live.com) cannot be bridged")
    if host in _GOVERNMENT_HOSTS:
        raise JoinLinkError(
            f"meetings of Teams in a Microsoft 365 government cloud ({host}) cannot be bridged: Azure Communication "
            "Services cannot join them"
        )
    if host not in TEAMS_HOSTS:
        raise JoinLinkError(f"{host or 'the link'} is not a Teams address (expected teams.microsoft.com)")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) >= 2 and segments[0].lower() == "l" and segments[1].lower() == "meetup-join":
        return _long_link(url, parts, segments)
    if segments and segments[0].lower() == "meet":
        return _short_link(url, parts, segments)
    raise JoinLinkError("not a meeting join link (expected /l/meetup-join/... or /meet/...)")
