"""The operators' commands (meetings, sessions, users, status): clients of a running bridge's admin API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from .admin.tables import status_lines, table, when
from .demo import read_demo

COMMANDS = ("meetings", "sessions", "users", "status")
DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_ENV = "BRIDGE_ADMIN_TOKEN"
TIMEOUT_S = 60.0
"""Adding a meeting may wait on a Graph lookup, removing one on its users' notices."""


class CliError(Exception):
    """Printed as one line after "error: "; the command exits 1."""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the bridge's base URL (default: $BRIDGE_URL or {DEFAULT_URL})")
    common.add_argument("--token", help=f"the operator token (default: ${TOKEN_ENV}, else the demo's)")
    common.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    common.add_argument("--state-dir", type=Path, default=Path(".bridge"), help="where `run` saved the demo's token")
    return common


def add_parsers(sub: Any) -> None:
    """The meetings, sessions, users and status subcommands, on the main parser's subparsers."""
    common = [_common()]
    meetings = sub.add_parser("meetings", help="list, add or remove the bridged meetings").add_subparsers(
        dest="action", required=True
    )
    meetings.add_parser("list", parents=common, help="list meetings")
    add = meetings.add_parser("add", parents=common, help="bridge a meeting by its join link (or Graph id)")
    add.add_argument("link", nargs="?", help="the Teams join link, long or short")
    add.add_argument("--graph-meeting-id", help="instead of a link: the meeting's Graph id (with --organizer-id)")
    add.add_argument("--organizer-id", help="the organizer's Entra object id")
    add.add_argument("--code", help="the join code users give (default: generated)")
    add.add_argument("--name", help="the name users are told")
    add.add_argument("--identity-mode", choices=["per_user", "shared"])
    add.add_argument("--allow", action="append", help="who may join (repeat); default anyone")
    remove = meetings.add_parser("remove", parents=common, help="end a meeting's sessions and remove it")
    remove.add_argument("meeting", help="the meeting's id or join code")

    sessions = sub.add_parser("sessions", help="list or end sessions").add_subparsers(dest="action", required=True)
    listing = sessions.add_parser("list", parents=common, help="list sessions with their state")
    listing.add_argument("--meeting", help="only this meeting (id or join code)")
    listing.add_argument("--state", help="only these states, comma-separated; `active` for the live ones")
    end = sessions.add_parser("end", parents=common, help="end a session; the user is told")
    end.add_argument("session", help="the session's number")

    users = sub.add_parser("users", help="block, unblock or forget an external user").add_subparsers(
        dest="action", required=True
    )
    for action, text in (
        ("block", "block a user and end their sessions"),
        ("unblock", "let a blocked user back in"),
        ("forget", "delete a user's identity, sessions and messages"),
    ):
        users.add_parser(action, parents=common, help=text).add_argument(
            "user", help="the address: webhook:<client>/<user> or sms:+15551234567"
        )
    sub.add_parser("status", parents=common, help="what is running: counts, queue depths, last errors")


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.url, self._token = url.rstrip("/"), token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        try:
            request = urllib.request.Request(f"{self.url}/api/v1{path}", data=data, method=method, headers=headers)
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            raise CliError(self._refusal(exc)) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError):
                raise CliError(f"no bridge is running at {self.url} (connection refused)") from exc
            raise CliError(f"cannot reach the bridge at {self.url}: {exc.reason}") from exc
        except TimeoutError as exc:
            raise CliError(f"the bridge at {self.url} did not answer within {TIMEOUT_S:.0f} s") from exc
        except (OSError, ValueError) as exc:  # a reset connection, or a URL urllib cannot use
            raise CliError(f"cannot reach the bridge at {self.url}: {exc}") from exc
        try:
            return json.loads(text) if text else None
        except ValueError as exc:
            raise CliError(f"{self.url} answered something that is not JSON: is it the bridge?") from exc

    def _refusal(self, exc: urllib.error.HTTPError) -> str:
        try:
            answer = json.loads(exc.read())
            reason = str(answer["reason"])
        except (ValueError, KeyError, TypeError, OSError):
            answer, reason = None, ""
        if exc.code == 401:
            return f"the bridge refused the token ({reason or 401}); give --token or set {TOKEN_ENV}"
        if answer is None and exc.code == 404:
            return f"the bridge at {self.url} has no admin API (is [admin] token set in its configuration?)"
        return reason or f"the bridge answered {exc.code}"


def _client(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("BRIDGE_URL") or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--url must be the bridge's http(s) URL, like {DEFAULT_URL} (got {url!r})")
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        try:
            token = (read_demo(args.state_dir) or {}).get("adminToken")
        except (OSError, ValueError):
            token = None
    if not token:
        raise CliError(f"no operator token: give --token or set {TOKEN_ENV} (the demo's is found after `run`)")
    return Client(url, str(token))


def _user_path(user: str, action: str = "") -> str:
    return f"/users/{quote(user, safe='')}" + (f"/{action}" if action else "")


def _meetings(args: argparse.Namespace, api: Client) -> list[str] | Any:
    if args.action == "list":
        found = api.call("GET", "/meetings")
        if args.json:
            return found
        rows = [
            [m["id"], m["code"], m["name"], "paused" if m["paused"] else "live", m["activeSessions"], m["source"]]
            for m in found["meetings"]
        ]
        return table(["ID", "CODE", "NAME", "STATE", "SESSIONS", "SOURCE"], rows)
    if args.action == "add":
        body: dict[str, Any] = {"link": args.link} if args.link else {}
        for key, value in (
            ("graphMeetingId", args.graph_meeting_id),
            ("organizerId", args.organizer_id),
            ("code", args.code),
            ("name", args.name),
            ("identityMode", args.identity_mode),
            ("allow", args.allow),
        ):
            if value is not None:
                body[key] = value
        if not args.json:
            print("resolving the link…" if args.link else "looking the meeting up…", file=sys.stderr, flush=True)
        meeting = api.call("POST", "/meetings", body)
        return meeting if args.json else [f"added: code {meeting['code']} ({meeting['id']}, {meeting['name']})"]
    ref = quote(args.meeting, safe="")
    meeting = api.call("GET", f"/meetings/{ref}")
    api.call("DELETE", f"/meetings/{ref}")
    return {"removed": meeting["id"]} if args.json else [f"removed: {meeting['id']} (code {meeting['code']})"]


def _sessions(args: argparse.Namespace, api: Client) -> list[str] | Any:
    if args.action == "end":
        api.call("DELETE", f"/sessions/{quote(args.session, safe='')}")
        return {"ended": args.session} if args.json else [f"ended: session {args.session}"]
    query = {k: v for k, v in (("meeting", args.meeting), ("state", args.state)) if v}
    found = api.call("GET", "/sessions" + (f"?{urlencode(query)}" if query else ""))
    if args.json:
        return found
    codes = {m["id"]: m["code"] for m in api.call("GET", "/meetings")["meetings"]}
    rows = [
        [s["id"], s["userId"], codes.get(s["meetingId"], s["meetingId"]), s["state"], when(s["joinedAt"]), s["reason"]]
        for s in found["sessions"]
    ]
    return table(["ID", "USER", "MEETING", "STATE", "JOINED (UTC)", "REASON"], rows)


def _users(args: argparse.Namespace, api: Client) -> list[str] | Any:
    answer = api.call("POST", _user_path(args.user, args.action))
    if args.json:
        return answer or {"forgotten": args.user}
    done = {"block": "blocked", "unblock": "unblocked", "forget": "forgotten"}[args.action]
    return [f"{done}: {args.user}"]


def run(args: argparse.Namespace) -> int:
    """Run one operator command; errors are one line on stderr and exit 1."""
    try:
        api = _client(args)
        if args.command == "meetings":
            out = _meetings(args, api)
        elif args.command == "sessions":
            out = _sessions(args, api)
        elif args.command == "users":
            out = _users(args, api)
        else:
            found = api.call("GET", "/status")
            out = found if args.json else status_lines(found)
    except CliError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)  # one line, whatever the reason held
        return 1
    print(json.dumps(out, indent=2, ensure_ascii=False) if args.json else "\n".join(out))
    return 0
