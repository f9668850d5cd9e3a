"""The console's sign-in: server-side sessions behind an HttpOnly cookie, their CSRF tokens, the same-origin check."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import Morsel
from urllib.parse import urlsplit

from aiohttp import web

from ..config import SETTINGS

COOKIE = "console_session"
COOKIE_PATHS = ("/console", "/api/v1")
"""The cookie goes to the console's pages and to the admin API its scripts call, nowhere else."""
CSRF_HEADER = "X-CSRF-Token"
LIFETIME_S = 12 * 3600.0
MAX_SESSIONS = 256
"""Sign-ins kept at once; the oldest goes when a new one would exceed this."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def wire_bytes(text: str) -> bytes:
    """A header or cookie value as bytes to compare or hash. aiohttp hands bytes that are not UTF-8 over as lone
    surrogates (surrogateescape), which a plain encode() refuses with an exception, that is a 500."""
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class ConsoleSession:
    csrf: str
    expires: float
    """On the sessions' clock (monotonic seconds)."""


class ConsoleSessions:
    """Signed-in browsers, in memory: a restart signs everyone out. Keyed by a hash of the cookie's random id, so
    looking one up compares hashes, not the secret itself."""

    def __init__(
        self, lifetime_s: float = LIFETIME_S, limit: int = MAX_SESSIONS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lifetime, self._limit, self._clock = lifetime_s, limit, clock
        self._sessions: dict[str, ConsoleSession] = {}

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(wire_bytes(session_id)).hexdigest()

    def create(self) -> tuple[str, ConsoleSession]:
        self._prune()
        while len(self._sessions) >= self._limit:
            del self._sessions[next(iter(self._sessions))]  # dicts keep insertion order: the oldest first
        session_id = secrets.token_urlsafe(32)
        session = ConsoleSession(csrf=secrets.token_urlsafe(32), expires=self._clock() + self._lifetime)
        self._sessions[self._key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> ConsoleSession | None:
        if not session_id or len(session_id) > 100:
            return None
        key = self._key(session_id)
        session = self._sessions.get(key)
        if session is not None and session.expires <= self._clock():
            del self._sessions[key]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(self._key(session_id), None)

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]

    def __len__(self) -> int:
        return len(self._sessions)


CONSOLE_SESSIONS: web.AppKey[ConsoleSessions] = web.AppKey("console_sessions")


def session_of(request: web.Request) -> ConsoleSession | None:
    """The console session the request's cookie names, if it is signed in (and the console is on)."""
    sessions = request.app.get(CONSOLE_SESSIONS)
    return sessions.get(request.cookies.get(COOKIE)) if sessions is not None else None


def token_matches(request: web.Request, given: str) -> bool:
    token = request.app[SETTINGS].admin.token
    # Constant time, on bytes: a timing difference must not reveal how much of a guess was right.
    return token is not None and hmac.compare_digest(wire_bytes(given.strip()), wire_bytes(token.get_secret_value()))


def _origins(request: web.Request) -> set[str]:
    own = {f"{request.scheme}://{request.host}"}
    public = request.app[SETTINGS].bridge.public_url
    if public:
        parts = urlsplit(public)
        own.add(f"{parts.scheme}://{parts.netloc}")
    return own


def cross_site(request: web.Request) -> bool:
    """A request another site's page made: told by Sec-Fetch-Site or Origin when the browser sends them."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    return origin is not None and origin not in _origins(request)


def refusal(request: web.Request, session: ConsoleSession, form_token: str | None = None) -> str | None:
    """Why a signed-in request may not change anything, or None. Reading needs only the cookie; a change must come
    from our own pages and carry the session's CSRF token (header, or a form field for plain HTML forms)."""
    if request.method in SAFE_METHODS:
        return None
    if cross_site(request):
        return "cross-site requests are refused"
    given = request.headers.get(CSRF_HEADER, form_token or "")
    if not given or not hmac.compare_digest(wire_bytes(given), wire_bytes(session.csrf)):
        return f"send the console's CSRF token as {CSRF_HEADER}"
    return None


def _secure(request: web.Request) -> bool:
    if request.secure:
        return True
    public = request.app[SETTINGS].bridge.public_url
    # Behind a proxy that ends TLS the browser still speaks https to the public address, whatever Host the proxy
    # passes on (its own upstream address by default, a port, another case): the configured scheme decides.
    return bool(public) and urlsplit(public).scheme.lower() == "https"


def _cookie(request: web.Request, value: str, path: str, *, clear: bool = False) -> str:
    morsel: Morsel[str] = Morsel()
    morsel.set(COOKIE, value, value)
    morsel["path"] = path
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if _secure(request):
        morsel["secure"] = True
    if clear:
        morsel["max-age"] = 0
    return morsel.OutputString()


def set_cookie(response: web.StreamResponse, request: web.Request, session_id: str) -> None:
    """A session cookie (no Max-Age: it goes when the browser closes; the server forgets it after 12 h)."""
    for path in COOKIE_PATHS:
        # One Set-Cookie per path: aiohttp's set_cookie keeps only one cookie per name.
        response.headers.add("Set-Cookie", _cookie(request, session_id, path))


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    for path in COOKIE_PATHS:
        response.headers.add("Set-Cookie", _cookie(request, "", path, clear=True))
