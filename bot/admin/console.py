"""The operators' console at /console: sign-in and sign-out, its pages and their static files, its event stream."""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from ..refusal import refuse
from ..store import STORE
from .console_auth import (
    CONSOLE_SESSIONS,
    COOKIE,
    ConsoleSessions,
    clear_cookie,
    cross_site,
    refusal,
    session_of,
    set_cookie,
)
from .console_events import STREAMS, Streams, events
from .throttle import Attempt, try_token

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
PAGES = ("login", "dashboard", "meeting")
# Matched whole (fullmatch): `$` alone also accepts a trailing newline, which would end up in the Location header.
_NEXT = re.compile(r"/console(/meetings/[A-Za-z0-9._~%-]{1,200})?")
_SECURITY_HEADERS = {
    # Only our own files: no inline script, no third-party anything, no framing.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make form posts say Origin: null
    "Cache-Control": "no-store",
}
TEMPLATES: web.AppKey[dict[str, str]] = web.AppKey("console_templates")


def _page(request: web.Request, name: str, status: int = 200, **values: str) -> web.Response:
    """A page from static/<name>.html, its {{placeholders}} filled with HTML-escaped values."""
    text = request.app[TEMPLATES][name]
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return web.Response(text=text, status=status, content_type="text/html", headers=_SECURITY_HEADERS)


def _login_page(
    request: web.Request, *, error: str = "", status: int = 200, next_path: str = "/console"
) -> web.Response:
    return _page(request, "login", status, error=error, next=next_path)


def _see_other(path: str) -> web.Response:
    return web.Response(status=303, headers={"Location": path, "Cache-Control": "no-store"})


async def home(request: web.Request) -> web.Response:
    session = session_of(request)
    if session is None:
        return _login_page(request)
    return _page(request, "dashboard", csrf=session.csrf)


async def meeting_page(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    session = session_of(request)
    if session is None:
        return _login_page(request, next_path=request.path if _NEXT.fullmatch(request.path) else "/console")
    store = request.app[STORE]
    if ref.isdigit() and await store.get_meeting(ref) is None:
        by_code = await store.meeting_by_code(ref)
        if by_code is not None:  # a join code is a fine way to name a meeting in an address bar
            raise web.HTTPSeeOther(f"/console/meetings/{by_code.id}")
    return _page(request, "meeting", csrf=session.csrf, meeting=ref)


async def _form(request: web.Request) -> MultiDictProxy[Any] | web.Response:
    """The posted form, or a JSON 4xx for a body that is none: aiohttp raises on a charset it cannot decode with,
    broken multipart, or a body over the app's size limit (plain text there, JSON here like every other door)."""
    try:
        return await request.post()
    except web.HTTPRequestEntityTooLarge:
        return refuse(413, "too_large", "the body is larger than a form may be")
    except (ValueError, LookupError):  # UnicodeDecodeError is a ValueError; LookupError: an unknown charset
        return refuse(400, "bad_request", "the body is not a readable form")


async def login(request: web.Request) -> web.Response:
    form = await _form(request)
    if isinstance(form, web.Response):
        return form
    next_path = str(form.get("next") or "/console")
    next_path = next_path if _NEXT.fullmatch(next_path) else "/console"
    if cross_site(request):
        return _login_page(request, error="Sign in from this console's own page.", status=403, next_path=next_path)
    token = form.get("token")
    attempt = try_token(request, token, "console") if isinstance(token, str) else Attempt(False)
    if attempt.retry_after:
        wait = f"Too many wrong tokens from this address: try again in {attempt.retry_after} s."
        page = _login_page(request, error=wait, status=429, next_path=next_path)
        page.headers["Retry-After"] = str(attempt.retry_after)
        return page
    if not attempt.accepted:
        log.info("console: a sign-in with a wrong token was refused")
        return _login_page(request, error="That is not the operator token.", status=401, next_path=next_path)
    sessions = request.app[CONSOLE_SESSIONS]
    sessions.drop(request.cookies.get(COOKIE))  # a fresh id at every sign-in: no session fixation
    session_id, _ = sessions.create()
    log.info("console: an operator signed in")
    response = _see_other(next_path)
    set_cookie(response, request, session_id)
    return response


async def logout(request: web.Request) -> web.Response:
    session = session_of(request)
    if session is not None:
        form = await _form(request)
        if isinstance(form, web.Response):
            return form
        csrf = form.get("csrf")
        why = refusal(request, session, csrf if isinstance(csrf, str) else None)
        if why is not None:
            return refuse(403, "forbidden", why)
        request.app[CONSOLE_SESSIONS].drop(request.cookies.get(COOKIE))
        log.info("console: an operator signed out")
    response = _see_other("/console")
    clear_cookie(response, request)
    return response


async def whoami(request: web.Request) -> web.Response:
    """Whether the cookie still signs in: the pages ask when their event stream fails for good."""
    if session_of(request) is None:
        return web.json_response({"signedIn": False}, status=401, headers={"Cache-Control": "no-store"})
    return web.json_response({"signedIn": True}, headers={"Cache-Control": "no-store"})


async def _close_streams(app: web.Application) -> None:
    await app[STREAMS].close()


def add_console(app: web.Application) -> None:
    """Register the console on a bridge app with an operator token, before it starts."""
    app[CONSOLE_SESSIONS] = ConsoleSessions()
    app[STREAMS] = Streams()
    app[TEMPLATES] = {name: (STATIC / f"{name}.html").read_text(encoding="utf-8") for name in PAGES}
    # Before the server waits for open requests to finish: an event stream never would on its own.
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/console", home)
    app.router.add_post("/console/login", login)
    app.router.add_post("/console/logout", logout)
    app.router.add_get("/console/session", whoami)
    app.router.add_get("/console/events", events, allow_head=False)
    app.router.add_get("/console/meetings/{id}", meeting_page)
    app.router.add_static("/console/static", STATIC)
