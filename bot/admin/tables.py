"""Plain-text output of the operators' commands: aligned tables and the status summary."""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    # Names come from outside (Graph, operators, users): no control character reaches the terminal.
    return "".join(c if c.isprintable() else "?" for c in str(value))


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart; `(none)` for no rows."""
    if not rows:
        return ["(none)"]
    cells = [headers, *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def when(stamp: str | None) -> str:
    """An ISO time as `2024-05-01 12:00:00` (UTC, as the bridge stores it)."""
    return stamp[:19].replace("T", " ") if stamp else ""


def _duration(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if days else f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def _counts(counts: dict[str, int]) -> str:
    busy = [f"{name} {n}" for name, n in counts.items() if n]
    return ", ".join(busy) or "none"


def status_lines(status: dict[str, Any]) -> list[str]:
    channels = status.get("channels", {})
    webhook = ", ".join(channels.get("webhook", [])) or "no clients"
    where = f"on ACS at {_cell(status.get('acsEndpoint'))}"
    meetings = status["meetings"]
    outbox = status["outbox"]
    lines = [
        f"bridge {status.get('version', '?')}, up {_duration(status.get('uptimeSeconds', 0))}, {where}",
        f"channels:  webhook ({_cell(webhook)}), sms ({_cell(channels.get('sms'))})",
        f"meetings:  {meetings['total']} ({meetings['paused']} paused)",
        f"sessions:  {_counts(status['sessions'])}",
        f"outbox:    {outbox.get('in', 0)} waiting to Teams, {outbox.get('out', 0)} waiting to users",
    ]
    for refused in status.get("chatRefused", []):
        lines.append(
            f"chat refused: {_cell(refused['name'])} (code {_cell(refused['code'])}), {refused['sessions']} in the "
            f"call cannot chat: {_cell(refused.get('reason'))}"
        )
    errors = status.get("lastErrors", [])
    lines.append("last errors:" if errors else "last errors: none")
    for err in errors:
        lines.append(
            f"  {_cell(when(err.get('createdAt')))}  {err['direction']}  {_cell(err['userId'])}: {_cell(err['error'])}"
        )
    return lines
