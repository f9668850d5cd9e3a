"""The soak's faults (what the sandbox is told to inject) and its printed report."""

from __future__ import annotations

from collections import Counter
from typing import Any

# Where and how the sandbox misbehaves while the traffic runs. Each rule is rolled in turn, so the chance that a
# request meets some fault is roughly the sum over the rules matching it.
SEND = "/chat/threads/*/messages"
FAULTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("chat send 503", {"method": "POST", "path": SEND, "action": "status", "status": 503, "probability": 0.04}),
    (
        "chat send 429 Retry-After",
        {"method": "POST", "path": SEND, "action": "status", "status": 429, "retryAfter": 2, "probability": 0.03},
    ),
    ("chat send delay", {"method": "POST", "path": SEND, "action": "delay", "delayMs": 800, "probability": 0.05}),
    ("chat send dropped before", {"method": "POST", "path": SEND, "action": "drop_before", "probability": 0.03}),
    ("chat send answer lost", {"method": "POST", "path": SEND, "action": "drop_after", "probability": 0.05}),
    ("chat list 503", {"method": "GET", "path": SEND, "action": "status", "status": 503, "probability": 0.03}),
    (
        "chat list 429 Retry-After",
        {"method": "GET", "path": SEND, "action": "status", "status": 429, "retryAfter": 1, "probability": 0.02},
    ),
    ("chat list delay", {"method": "GET", "path": SEND, "action": "delay", "delayMs": 500, "probability": 0.05}),
    ("chat list dropped before", {"method": "GET", "path": SEND, "action": "drop_before", "probability": 0.02}),
    ("identity 503", {"method": "POST", "path": "/identities*", "action": "status", "status": 503, "probability": 0.1}),
    ("sms send 503", {"method": "POST", "path": "/sms", "action": "status", "status": 503, "probability": 0.04}),
    (
        "sms send 429 Retry-After",
        {"method": "POST", "path": "/sms", "action": "status", "status": 429, "retryAfter": 1, "probability": 0.03},
    ),
    ("sms send dropped before", {"method": "POST", "path": "/sms", "action": "drop_before", "probability": 0.02}),
    ("sms send answer lost", {"method": "POST", "path": "/sms", "action": "drop_after", "probability": 0.05}),
    (
        "call API 503",
        {"method": "GET", "path": "/sandbox/v1/call*", "action": "status", "status": 503, "probability": 0.05},
    ),
    ("call API delay", {"path": "/sandbox/v1/call*", "action": "delay", "delayMs": 1000, "probability": 0.05}),
)
# With chat events on: Event Grid's own misbehaviour on the way to the bridge's door (the sandbox's delivery faults).
CHAT_EVENT_FAULTS: dict[str, Any] = {"lose": 0.2, "duplicate": 0.2, "delayS": 2.0}
# The callback sink's own misbehaviour (bench/soak.py FlakySink), in the same terms.
SINK_FAULTS: dict[str, dict[str, Any]] = {
    "callback 503": {"action": "status", "status": 503},
    "callback answer lost": {"action": "drop_after"},
}
# Failed deliveries the soak accepts, by the start of their reason: only the outbound backlog limit, a stated
# behaviour (newer deliveries to a user with that many waiting fail, and the user is told once). The soak checks
# the telling and leaves their tokens out of what the user should get. Any other failure is a finding.
EXPECTED_FAILURES: tuple[str, ...] = ("backlog_full",)


def by_kind(fired: dict[str, int]) -> dict[str, int]:
    """Faults fired, summed by what they did: 503, 429, delay, dropped before handling, answer lost."""
    kinds: Counter[str] = Counter()
    rules = dict(FAULTS) | SINK_FAULTS
    for label, n in fired.items():
        rule = rules[label]
        action = rule["action"]
        kind = {"drop_before": "dropped before handling", "drop_after": "answer lost after storing"}.get(action, action)
        kinds[str(rule["status"]) if action == "status" else kind] += n
    return dict(kinds)


def table(result: dict[str, Any]) -> str:
    o, m = result["options"], result["messages"]
    rows = [
        ("inbound → meeting threads", result["inbound"]),
        ("Teams → external users", result["outboundTeams"]),
        ("external → other users", result["outboundRelayed"]),
    ]
    lines = [
        f"soak (seed {o['seed']}): {result['meetings']} meetings, {result['users']['webhook']} webhook + "
        f"{result['users']['sms']} SMS users, {result['users']['teams']} Teams users; faults "
        f"{'on' if o['faults'] else 'off'}; chat events {'on' if o.get('chat_events') else 'off'}",
        f"{'':28}{'expected':>9}{'arrived':>9}{'lost':>6}{'duplicated':>11}{'out of order':>13}",
    ]
    for label, t in rows:
        lines.append(
            f"{label:28}{t['expected']:>9}{t['arrived']:>9}{t['lost']:>6}{t['duplicated']:>11}"
            f"{t['outOfOrder']:>13}"
            + (f"  unexpected {t['unexpected']}" if t["unexpected"] else "")
            + (f"  missed while re-joining {t['excused']}" if t.get("excused") else "")
        )
    kills = result["kills"]
    down = [k["down_s"] for k in kills]
    fired = result["faults"]
    client = result["webhookClient"]
    if result.get("connector") == "browser":
        g = result["legGaps"]
        left = sum(k.get("browser_left", 0) for k in kills)
        lines += [
            f"call legs: browser connector, the sandbox keeps a vanished leg {g['legGraceS']:g} s; "
            f"browser processes still running 2 s after their bridge was killed (then killed): {left}",
            f"  no leg of a meeting in its chat: {g['gaps']} gaps in {g['meetingsWithGaps']} meetings, longest "
            f"{g['longestGapS']:.1f} s, {g['totalGapS']:.1f} s in all; Teams posts made in them (unreadable by "
            f"design): {g['teamsPostsUnreadable']}; Teams posts the bridge handed to nobody (in a gap, or still "
            f"unread when the legs went): {g['teamsPostsReachingNobody']}",
        ]
    lines += [
        f"messages: {m['inboundWebhook']} webhook + {m['inboundSms']} SMS acknowledged in, {m['teamsPosts']} Teams "
        f"posts; outbox rows delivered: {m['deliveredInbound']} in, {m['deliveredOutbound']} out",
        f"kills: {len(kills)} SIGKILL" + (f" (down {min(down):.1f}-{max(down):.1f} s each)" if down else ""),
        f"faults injected: {sum(fired.values())} ("
        + ", ".join(f"{kind} {n}" for kind, n in result["faultsByKind"].items())
        + ")",
        "  by rule: " + ", ".join(f"{label} {n}" for label, n in fired.items() if n),
        f"webhook client: {client['requests']} requests, retries {client['retries'] or 'none'}; callback repeats "
        f"(same webhook-id, dropped): {result['callbackRepeats']}",
        "Event Grid: "
        + "; ".join(
            f"{kind} {g['attempts']} attempts for {g['delivered']} deliveries"
            + (f", {g['lost']} lost and {g['duplicated']} repeated on the way" if g["lost"] or g["duplicated"] else "")
            for kind, g in result["eventGrid"].items()
        ),
        f"shed by the overload limits (told, not counted lost): {result['shed']['outboundBacklogFull']} "
        f"deliveries out, {result['shed']['inboundBusy']} texts in",
        f"outbox left over: {result['leftovers'] or 'nothing'}",
        f"bridge: exit {result['bridgeExit']} on SIGTERM, {result['bridgeErrorsLogged']} errors logged",
        f"time: traffic {result['seconds']['traffic']} s, drain {result['seconds']['drain']} s, "
        f"wall {result['seconds']['wall']} s",
    ]
    for finding in result["findings"] + client["findings"]:
        lines.append(f"FINDING: {finding}")
    for key in ("inbound", "outboundTeams", "outboundRelayed"):
        lines += [f"  {e}" for e in result[key]["examples"]]
    lines.append("PASS" if result["ok"] else "FAIL")
    return "\n".join(lines)
