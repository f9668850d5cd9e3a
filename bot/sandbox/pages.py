"""The sandbox's own pages: the index, a meeting as its organizer sees it in Teams, and a simulated phone.

The pages are static HTML, CSS and JavaScript from ./static; their scripts read and drive the control API
(/sandbox/v1) on the same origin, so this module only serves files and answers unknown ids with a friendly 404.
Like the control API they are unauthenticated: the sandbox listens on loopback only.
"""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path

from aiohttp import web

from .keys import WORLD
from .phones import is_e164

routes = web.RouteTableDef()

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/sandbox/ui"
# Defence in depth under the pages' own escaping: no inline script, no foreign origin, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _page(name: str) -> web.Response:
    body = (STATIC_DIR / name).read_text(encoding="utf-8")
    return web.Response(text=body, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS)


def not_found_page(what: str) -> web.Response:
    """A 404 a person can read, with a way back to the index."""
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Not found · Sandbox</title>
<link rel="stylesheet" href="{PREFIX}/static/style.css">
</head>
<body>
<main class="notfound">
<h1>Not found</h1>
<p id="reason">{html.escape(what)}</p>
<p>The sandbox keeps its meetings in memory, so a restart forgets them.
<a href="{PREFIX}/">Back to the sandbox's pages</a>.</p>
</main>
</body>
</html>
"""
    return web.Response(status=404, text=body, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS)


@routes.get(PREFIX)
async def bare(request: web.Request) -> web.Response:
    raise web.HTTPFound(f"{PREFIX}/")


@routes.get(f"{PREFIX}/")
async def index(request: web.Request) -> web.Response:
    return _page("index.html")


@routes.get(PREFIX + "/meetings/{meeting}")
async def teams_view(request: web.Request) -> web.Response:
    meeting_id = request.match_info["meeting"]
    if meeting_id not in request.app[WORLD].meetings:
        return not_found_page(f"There is no meeting {meeting_id} in this sandbox.")
    return _page("teams.html")


@routes.get(PREFIX + "/phones/{number}")
async def phone(request: web.Request) -> web.Response:
    number = request.match_info["number"].strip()  # already percent-decoded: %2B15550100 is +15550100
    if not is_e164(number):
        return not_found_page(f"{number} is not a phone number in E.164 format (+ and 7-15 digits, e.g. +15550100).")
    return _page("phone.html")


@routes.get(PREFIX + "/static/{name}")
async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = STATIC_DIR / name
    # Only the files shipped in static/ itself: no subdirectories, no dot files, no way out.
    if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
        return not_found_page(f"There is no file {name} here.")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if content_type.startswith("text/"):
        content_type += "; charset=utf-8"
    headers = SECURITY_HEADERS | {"Content-Type": content_type}
    return web.FileResponse(path, headers=headers)


@routes.get(PREFIX + "/{tail:.*}")
async def unknown(request: web.Request) -> web.Response:
    return not_found_page(f"There is no page {request.path} in this sandbox.")
