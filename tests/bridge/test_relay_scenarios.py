"""End-to-end scenarios of the bridge core: lobby, removal, meeting end, relay mode, lost answers, throttling,
restart, Teams edits and deletes, callback failures, forgetting a user and the webhook door's refusals.

Everything runs over loopback against the sandbox with the real Azure SDKs; nothing of the bridge is mocked.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import SecretStr

from bot.channels.webhook import sign
from bot.config import MeetingConfig, WebhookClient
from bot.metrics import METRICS
from bot.models import Delivery, DeliveryState, Direction, IdentityMode, Session, SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, Receiver, bridge_settings, new_secret, wait_for
from tests.support.sandbox import Control
from tests.support.webhook import CODE, World

SEND_PATH = "/chat/threads/*/messages"
CHAT_API_VERSION = "2024-03-07"


class Scene(World):
    """A World with the organizer's hands (lobby, roster, removal, posting) and a few store queries."""

    @property
    def meeting_path(self) -> str:
        return f"/sandbox/v1/meetings/{self.meeting['id']}"

    async def roster(self) -> dict[str, Any]:
        body = await self.control.ok("GET", self.meeting_path)
        return dict(body["roster"])

    async def waiting_in_lobby(self, count: int = 1) -> list[dict[str, Any]]:
        async def lobby() -> list[dict[str, Any]]:
            found = list((await self.roster())["lobby"])
            return found if len(found) >= count else []

        return list(await wait_for(lobby, what=f"{count} leg(s) in the lobby"))

    async def admit(self, call_id: str) -> None:
        await self.control.ok("POST", f"{self.meeting_path}/lobby/{call_id}/admit")

    async def remove(self, call_id: str) -> None:
        await self.control.ok("DELETE", f"{self.meeting_path}/participants/{call_id}")

    async def post(self, html: str, sender: str | None = None) -> dict[str, Any]:
        sender = sender or self.meeting["organizerId"]
        return dict(await self.control.ok("POST", f"{self.meeting_path}/messages", {"from": sender, "html": html}))

    async def lines(self) -> list[str]:
        """Every line of every chat message in the thread, oldest first (merged messages hold several)."""
        return [line for _, html in await self.texts() for line in html.split("<br>")]

    async def until_lines(self, expected: list[str]) -> list[str]:
        async def all_there() -> list[str]:
            lines = await self.lines()
            return lines if all(text in lines for text in expected) else []

        return list(await wait_for(all_there, limit_s=60, what="every text in the thread"))

    async def session(self, user: str) -> Session:
        mine = [s for s in await self.bridge.store.sessions() if s.user_id == f"webhook:app/{user}"]
        assert mine, f"no session for {user}"
        return mine[-1]

    async def inbound(self, user: str) -> list[Delivery]:
        return await self.bridge.store.deliveries(user_id=f"webhook:app/{user}", direction=Direction.INBOUND)

    async def until_inbound_final(self, user: str) -> list[Delivery]:
        async def final() -> list[Delivery]:
            rows = await self.inbound(user)
            done = rows and all(r.state in (DeliveryState.DELIVERED, DeliveryState.FAILED) for r in rows)
            return rows if done else []

        return list(await wait_for(final, limit_s=60, what=f"{user}'s messages to reach a final state"))

    def notices(self, user: str) -> list[str]:
        return [str(n["text"]) for n in self.receiver.of("notice", user)]

    async def until_notice(self, user: str, fragment: str) -> str:
        async def seen() -> list[str]:
            return [n for n in self.notices(user) if fragment in n]

        found = await wait_for(seen, what=f"notice {fragment!r} for {user}")
        return str(found[0])

    async def until_received(self, kind: str, user: str, count: int = 1) -> list[dict[str, Any]]:
        async def got() -> list[dict[str, Any]]:
            items = self.receiver.of(kind, user)
            return items if len(items) >= count else []

        return list(await wait_for(got, what=f"{count} {kind} callback(s) for {user}"))

    async def joined(self, user: str) -> None:
        status, body = await self.send(user, "join")
        assert status == 202, body
        await self.until_state(user, SessionState.IN_CALL)
        await self.until_notice(user, "in the meeting chat")

    async def faults(self, *rules: dict[str, Any], seed: int | None = None) -> None:
        body: dict[str, Any] = {"rules": list(rules)}
        if seed is not None:
            body["seed"] = seed
        await self.control.ok("PUT", "/sandbox/v1/faults", body)


@asynccontextmanager
async def scene(
    control: Control,
    info: SandboxInfo,
    tmp_path: Path,
    *,
    lobby: str = "auto",
    relay: dict[str, Any] | None = None,
    extra_secrets: int = 0,
    max_message_bytes: int = 4096,
    **meeting_opts: Any,
) -> AsyncIterator[Scene]:
    meeting = await control.meeting(lobby=lobby)
    secrets = [new_secret() for _ in range(1 + extra_secrets)]

    def client(url: str | None) -> WebhookClient:
        return WebhookClient(
            secrets=[SecretStr(s) for s in secrets], callback_url=url, max_message_bytes=max_message_bytes
        )

    receiver = Receiver(client(None))
    await receiver.start()
    receiver.client = client(receiver.url)
    settings = bridge_settings(
        info,
        tmp_path / "bridge",
        clients={"app": receiver.client},
        meetings=[MeetingConfig(link=meeting["joinWebUrl"], code=CODE, name="Weekly sync", **meeting_opts)],
        relay=relay,
    )
    bridge = await Bridge(settings).start()
    world = Scene(control, bridge, receiver, meeting, secrets[0])
    try:
        yield world
    finally:
        await world.bridge.stop()
        await receiver.stop()


# 1-4: sessions follow the call ------------------------------------------------------------------------


async def test_manual_lobby_holds_messages_until_admitted(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async with scene(control, info, tmp_path, lobby="manual") as w:
        status, body = await w.send("ann", "join")
        assert status == 202
        await w.until_state("ann", SessionState.LOBBY)
        await w.until_notice("ann", "waiting to be admitted")
        held = ["first while waiting", "second while waiting", "third while waiting"]
        for text in held:
            status, body = await w.send("ann", text=text)
            assert status == 202 and body["status"] == "held", body
        assert [t for t in await w.lines() if "while waiting" in t] == []

        [leg] = await w.waiting_in_lobby()
        await w.admit(leg["id"])
        await w.until_state("ann", SessionState.IN_CALL)
        await w.until_notice("ann", "in the meeting chat")
        rows = await w.until_inbound_final("ann")
        assert all(r.state == DeliveryState.DELIVERED for r in rows), rows
        lines = await w.until_lines(held)
        assert [line for line in lines if "while waiting" in line] == held  # in order, each exactly once
        notices = w.notices("ann")
        assert notices.index(next(n for n in notices if "waiting" in n)) < notices.index(
            next(n for n in notices if "in the meeting chat" in n)
        )


async def test_never_admitted_user_is_told_and_held_message_fails(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with scene(control, info, tmp_path, lobby="manual") as w:
        await w.send("ann", "join")
        await w.until_state("ann", SessionState.LOBBY)
        status, body = await w.send("ann", text="will never arrive")
        assert status == 202 and body["status"] == "held"
        [leg] = await w.waiting_in_lobby()
        await w.remove(leg["id"])

        await w.until_state("ann", SessionState.LEFT)
        session = await w.session("ann")
        assert session.reason == "removed"
        await w.until_notice("ann", "The organizer removed you")
        undelivered = await w.until_notice("ann", "could not be delivered")
        assert undelivered.startswith("1 message")
        [row] = await w.inbound("ann")
        assert row.state == DeliveryState.FAILED and row.last_error, row
        assert "will never arrive" not in await w.lines()


async def test_organizer_removes_in_call_user(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async with scene(control, info, tmp_path) as w:
        await w.joined("ann")
        [leg] = [p for p in (await w.roster())["inCall"] if p.get("kind") == "acs"]
        await w.remove(leg["id"])

        await w.until_state("ann", SessionState.LEFT)
        assert (await w.session("ann")).reason == "removed"
        await w.until_notice("ann", "The organizer removed you")
        status, body = await w.send("ann", text="am I still here?")
        assert status == 409 and body["error"] == "not_in_call", body
        assert await w.inbound("ann") == []


async def test_meeting_end_ends_the_session(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async with scene(control, info, tmp_path) as w:
        await w.joined("ann")
        await control.ok("POST", f"{w.meeting_path}/end")

        await w.until_state("ann", SessionState.ENDED)
        notice = await w.until_notice("ann", "has ended")
        assert notice == "Weekly sync has ended."
        status, body = await w.send("ann", text="anyone?")
        assert status == 409 and body["error"] == "not_in_call"


async def test_leaving_while_the_join_is_under_way_hangs_up(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with scene(control, info, tmp_path) as w:
        await w.faults({"method": "POST", "path": "/sandbox/v1/calls", "action": "delay", "delayMs": 1000, "count": 1})
        assert (await w.send("ann", "join"))[0] == 202

        async def join_sent() -> bool:
            return bool((await w.control.ok("GET", "/sandbox/v1/faults"))["rules"][0]["fired"])

        # Leave only once the join request is out (held by the delay): a leave before it means no join at all.
        await wait_for(join_sent, what="the join request")
        assert (await w.send("ann", "leave"))[0] == 202
        await w.until_state("ann", SessionState.LEFT)
        user = await w.bridge.store.get_user("webhook:app/ann")
        assert user is not None and user.identity_id is not None
        identity = user.identity_id

        async def system(kind: str) -> bool:
            return any(m["type"] == kind and identity in json.dumps(m["content"]) for m in await w.thread())

        await wait_for(lambda: system("participantAdded"), what="the delayed join to land")
        await wait_for(lambda: system("participantRemoved"), what="the late leg to hang up")
        assert not [p for p in (await w.roster())["inCall"] if p.get("identity") == identity]


async def test_leaving_while_the_joins_token_is_issued_never_joins(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with scene(control, info, tmp_path) as w:
        rule = {"method": "POST", "path": "/identities/*:issueAccessToken", "action": "delay", "delayMs": 500}
        await w.faults(rule | {"count": 1})
        assert (await w.send("ann", "join"))[0] == 202

        async def token_asked() -> bool:
            return bool((await w.control.ok("GET", "/sandbox/v1/faults"))["rules"][0]["fired"])

        await wait_for(token_asked, what="the token request")
        assert (await w.send("ann", "leave"))[0] == 202
        await w.until_state("ann", SessionState.LEFT)
        calls_before = (await w.control.ok("GET", "/sandbox/v1/stats"))["requests"].get("POST /sandbox/v1/calls", 0)

        async def driver_done() -> bool:
            return all(leg.task is None or leg.task.done() for leg in w.bridge.relay.presence._legs.values())

        # The delayed token arrives; the leg's driver then finds nobody left to join for, and stops.
        await wait_for(driver_done, what="the leg's driver to stop")
        assert (await w.session("ann")).state == SessionState.LEFT
        calls_after = (await w.control.ok("GET", "/sandbox/v1/stats"))["requests"].get("POST /sandbox/v1/calls", 0)
        assert calls_after == calls_before
        assert not [p for p in (await w.roster())["inCall"] if p.get("kind") == "acs"]


# 5: relay mode -------------------------------------------------------------------------------------------


async def test_relay_mode_speaks_for_everyone_with_one_identity(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with scene(control, info, tmp_path, identity_mode=IdentityMode.SHARED) as w:
        await w.joined("ann")
        await w.joined("bob")
        assert (await w.send("ann", text="hello from ann"))[0] == 202
        await w.until_lines(["Ann: hello from ann"])
        assert (await w.send("bob", text="hello from bob"))[0] == 202
        await w.until_lines(["Bob: hello from bob"])

        posted = [m for m in await w.thread() if m["type"] in ("text", "html")]
        senders = {m["senderCommunicationIdentifier"]["rawId"] for m in posted}
        assert len(senders) == 1, senders
        acs_legs = [p for p in (await w.roster())["inCall"] if p.get("kind") == "acs"]
        assert len(acs_legs) == 1, acs_legs
        ann, bob = await w.session("ann"), await w.session("bob")
        assert ann.identity_id == bob.identity_id == senders.pop()

        # Each sees the other's relayed message, as Teams users do, and never gets their own back.
        async def crossed() -> bool:
            texts = {(r["user"]["id"], r["text"]) for r in w.receiver.of("message")}
            return {("bob", "Ann: hello from ann"), ("ann", "Bob: hello from bob")} <= texts

        await wait_for(crossed, what="each user gets the other's message")
        mine = [r for r in w.receiver.of("message") if r["text"].startswith(r["user"]["id"].title() + ":")]
        assert mine == []
        assert {r["from"]["kind"] for r in w.receiver.of("message")} == {"external"}

        await w.post("<p>Hi both</p>")

        async def teams_to_both() -> list[dict[str, Any]] | None:
            got = [r for r in w.receiver.of("message") if r["text"] == "Hi both"]
            return got if len(got) == 2 else None

        to_both = await wait_for(teams_to_both, what="the Teams message to both")
        assert {r["user"]["id"] for r in to_both} == {"ann", "bob"}
        assert len({r["id"] for r in to_both}) == 1

        # The shared leg stays while anyone uses it and hangs up when the last one leaves.
        assert (await w.send("ann", "leave"))[0] == 202
        await w.until_state("ann", SessionState.LEFT)
        assert (await w.send("bob", text="still here"))[0] == 202
        await w.until_lines(["Bob: still here"])
        assert (await w.send("bob", "leave"))[0] == 202
        await w.until_state("bob", SessionState.LEFT)

        async def hung_up() -> bool:
            return not [p for p in (await w.roster())["inCall"] if p.get("kind") == "acs"]

        await wait_for(hung_up, what="the relay leg to leave the call")


# 6-8: lost answers, 503s and the thread's send limits ------------------------------------------------------


async def assert_sent_once_in_order(w: Scene, user: str, texts: list[str]) -> None:
    rows = await w.until_inbound_final(user)
    assert [r.state for r in rows] == [DeliveryState.DELIVERED] * len(texts), [(r.state, r.last_error) for r in rows]
    lines = await w.until_lines(texts)
    assert [line for line in lines if line in texts] == texts


async def test_lost_send_answer_makes_no_duplicate(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async with scene(control, info, tmp_path) as w:
        await w.joined("ann")
        await w.faults({"method": "POST", "path": SEND_PATH, "action": "drop_after", "count": 1})
        assert (await w.send("ann", text="answer lost"))[0] == 202
        await assert_sent_once_in_order(w, "ann", ["answer lost"])
        [row] = await w.inbound("ann")
        assert row.attempts == 1 and row.remote_id  # found by its bridge id, not sent again
        faults = await control.ok("GET", "/sandbox/v1/faults")
        assert faults["injected"]["drop_after"] == 1


async def test_randomly_lost_send_answers_make_no_duplicates(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with scene(control, info, tmp_path) as w:
        await w.joined("ann")
        # With seed 39 the answers of sends 1-4 and 7-9 are lost (one draw per POST to the thread).
        await w.faults({"method": "POST", "path": SEND_PATH, "action": "drop_after", "probability": 0.5}, seed=39)
        texts = [f"lossy {i}" for i in range(10)]
        for text in texts[:6]:
            # One at a time: each message is its own send.
            status, body = await w.send("ann", text=text)
            assert status == 202

            async def attempted(delivery_id: str = body["id"]) -> bool:
                row = await w.bridge.store.get_delivery(delivery_id)
                return row is not None and row.attempts > 0

            await wait_for(attempted, what=f"{text!r} to be sent")
        for text in texts[6:]:
            # Then a burst: merged sends whose answers are lost too.
            assert (await w.send("ann", text=text))[0] == 202
        await assert_sent_once_in_order(w, "ann", texts)
        faults = await control.ok("GET", "/sandbox/v1/faults")
        assert faults["injected"]["drop_after"] >= 5, faults


async def test_lost_answer_to_a_merged_send_makes_no_duplicate(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    """Held messages are released together on admission and merged into one send, whose answer is lost."""
    async with scene(control, info, tmp_path, lobby="manual") as w:
        await w.send("ann", "join")
        await w.until_state("ann", SessionState.LOBBY)
        texts = [f"merged {i}" for i in range(5)]
        for text in texts:
            assert (await w.send("ann", text=text))[1]["status"] == "held"
        await w.faults({"method": "POST", "path": SEND_PATH, "action": "drop_after", "count": 1})
        [leg] = await w.waiting_in_lobby()
        await w.admit(leg["id"])
        await assert_sent_once_in_order(w, "ann", texts)
        assert len(await w.texts()) == 1  # one merged chat message, found again rather than resent
        faults = await control.ok("GET", "/sandbox/v1/faults")
        assert faults["injected"]["drop_after"] == 1


async def test_503_with_retry_after_is_retried_and_sent_once(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with scene(control, info, tmp_path) as w:
        await w.joined("ann")
        await w.faults(
            {"method": "POST", "path": SEND_PATH, "action": "status", "status": 503, "retryAfter": 1, "count": 2}
        )
        assert (await w.send("ann", text="after two 503s"))[0] == 202
        await assert_sent_once_in_order(w, "ann", ["after two 503s"])
        [row] = await w.inbound("ann")
        assert row.attempts == 3
        faults = await control.ok("GET", "/sandbox/v1/faults")
        assert faults["injected"]["status"] == 2


async def test_throttled_meeting_delivers_a_burst_without_a_429(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with scene(control, info, tmp_path) as w:
        assert (await control.ok("GET", "/sandbox/v1/limits"))["enabled"] is True
        await w.joined("ann")
        texts = [f"burst {i:02d}" for i in range(25)]
        for text in texts:
            status, body = await w.send("ann", text=text)
            assert status == 202, body
        await assert_sent_once_in_order(w, "ann", texts)
        limits = await control.ok("GET", "/sandbox/v1/limits")
        assert limits["throttled"] == 0, limits
        assert not w.notices("ann") or all("could not be delivered" not in n for n in w.notices("ann"))


# 9: restart -------------------------------------------------------------------------------------------------


async def test_restart_resumes_the_session_without_repeating_notices(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with scene(control, info, tmp_path) as w:
        await w.joined("ann")
        assert (await w.send("ann", text="before restart"))[0] == 202
        await w.until_lines(["before restart"])
        settings = w.bridge.settings
        await w.bridge.stop()
        w.bridge = await Bridge(settings).start()

        await w.until_state("ann", SessionState.IN_CALL)
        await w.post("<p>after the restart</p>")
        [msg] = await w.until_received("message", "ann")
        assert msg["text"] == "after the restart"
        assert (await w.send("ann", text="after restart"))[0] == 202
        await assert_sent_once_in_order(w, "ann", ["before restart", "after restart"])

        assert (await w.session("ann")).state == SessionState.IN_CALL
        assert len([n for n in w.notices("ann") if "in the meeting chat" in n]) == 1, w.notices("ann")
        stored = await w.bridge.store.deliveries(user_id="webhook:app/ann", direction=Direction.OUTBOUND)
        assert len([d for d in stored if d.kind == "notice" and d.body.get("state") == "in_call"]) == 1
        acs_legs = [p for p in (await w.roster())["inCall"] if p.get("kind") == "acs"]
        assert len(acs_legs) == 1, acs_legs


async def test_restart_takes_the_call_legs_up_without_a_token_each(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with scene(control, info, tmp_path) as w:
        users = ("ann", "bob", "cat")
        for user in users:
            await w.joined(user)
        settings = w.bridge.settings
        await w.bridge.stop()
        w.bridge = await Bridge(settings).start()

        await w.post("<p>after the restart</p>")
        for user in users:
            await w.until_received("message", user)
        # The legs were taken up from the resource's call event stream; only the meeting's reader needed a token.
        assert w.bridge.app[METRICS].registry.get_sample_value("bridge_token_refreshes_total") == 1
        assert len([p for p in (await w.roster())["inCall"] if p.get("kind") == "acs"]) == len(users)


async def test_a_quiet_threads_cursor_moves_past_its_last_message(
    control: Control, info: SandboxInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Re-read window shortened: the message is "settled" (visible to every read since) a moment after it is posted.
    monkeypatch.setattr("bot.relay.plans.OVERLAP", timedelta(milliseconds=300))
    async with scene(control, info, tmp_path) as w:
        await w.joined("ann")
        posted = await w.post("<p>one message, then quiet</p>")
        await w.until_received("message", "ann")
        created = datetime.fromisoformat(posted["createdOn"])

        async def past_it() -> bool:
            [meeting] = await w.bridge.store.list_meetings()
            return meeting.cursor is not None and datetime.fromisoformat(meeting.cursor) > created

        # Later reads start after it: a quiet thread is read back empty, not re-read on every poll.
        await wait_for(past_it, what="the cursor to pass the last message")
        assert len(w.receiver.of("message", "ann")) == 1


# 10-11: outbound edits, deletes and callback failures ---------------------------------------------------------


async def test_teams_edit_and_delete_reach_the_webhook_client(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with scene(control, info, tmp_path) as w:
        await w.joined("ann")
        organizer = w.meeting["organizerId"]
        posted = await w.post("<p>first draft</p>")
        [msg] = await w.until_received("message", "ann")
        await control.ok(
            "PATCH", f"{w.meeting_path}/messages/{posted['id']}", {"from": organizer, "html": "<p>second draft</p>"}
        )
        [edit] = await w.until_received("edit", "ann")
        status, _ = await control.call("DELETE", f"{w.meeting_path}/messages/{posted['id']}?from={quote(organizer)}")
        assert status == 204
        [delete] = await w.until_received("delete", "ann")

        assert msg["id"] == edit["id"] == delete["id"] == posted["id"]
        assert (msg["text"], edit["text"], delete["text"]) == ("first draft", "second draft", "")
        assert [r["type"] for r in w.receiver.received if r["type"] != "notice"] == ["message", "edit", "delete"]


async def test_failing_callback_is_retried_and_delivered_once(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with scene(control, info, tmp_path) as w:
        await w.joined("ann")
        w.receiver.fail_next = 3
        await w.post("<p>through a flaky callback</p>")
        [msg] = await w.until_received("message", "ann")
        assert msg["text"] == "through a flaky callback"
        assert w.receiver.fail_next == 0

        async def delivered() -> list[Delivery]:
            rows = await w.bridge.store.deliveries(user_id="webhook:app/ann", direction=Direction.OUTBOUND)
            return [r for r in rows if r.kind == "message" and r.state == DeliveryState.DELIVERED]

        [row] = await wait_for(delivered, what="the callback delivery to end delivered")
        assert row.attempts == 4
        assert w.receiver.ids.count(row.id) == 1
        assert len(w.receiver.of("message", "ann")) == 1


# 12: forgetting a user ---------------------------------------------------------------------------------------


async def test_forget_removes_the_user_everywhere(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async with scene(control, info, tmp_path) as w:
        await w.joined("ann")
        await w.joined("bob")
        assert (await w.send("ann", text="remember me not"))[0] == 202
        await w.until_lines(["remember me not"])
        await w.post("<p>for both</p>")
        await w.until_received("message", "ann")
        session = await w.session("ann")
        identity = session.identity_id
        assert identity is not None
        token = await w.bridge.relay.broker.token(identity)
        # Slow reads, so the meeting's reader (reading as ann, who joined first) is mid-read when she goes.
        await w.faults({"method": "GET", "path": SEND_PATH, "action": "delay", "delayMs": 1000})
        readers = w.bridge.relay.readers
        polls = readers.polls
        await wait_for(lambda: _true(readers.polls > polls), what="a read to start")

        await w.bridge.relay.forget("webhook:app/ann")

        async def removed_from_thread() -> bool:
            return any(
                m["type"] == "participantRemoved" and identity in json.dumps(m["content"]) for m in await w.thread()
            )

        await wait_for(removed_from_thread, what="ann's identity to leave the thread")
        store = w.bridge.store
        assert await store.get_user("webhook:app/ann") is None
        assert await store.deliveries(user_id="webhook:app/ann") == []
        assert [s for s in await store.sessions() if s.user_id == "webhook:app/ann"] == []
        assert not [p for p in (await w.roster())["inCall"] if p.get("identity") == identity]
        # The ACS identity is gone: its token no longer opens the thread.
        thread = quote(w.meeting["threadId"], safe="")
        status, _ = await control.call(
            "GET",
            f"/chat/threads/{thread}/messages?api-version={CHAT_API_VERSION}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert status == 401
        # Bob is untouched, and the meeting's reader carries on reading as him.
        assert (await w.session("bob")).state == SessionState.IN_CALL
        assert await store.get_user("webhook:app/bob") is not None
        await w.faults()
        await w.post("<p>after ann left</p>")
        # Bob has ann's message (external), "for both" and now this one, in thread order.
        received = await w.until_received("message", "bob", 3)
        assert [r["text"] for r in received] == ["remember me not", "for both", "after ann left"]


async def _true(value: bool) -> bool:
    return value


# 13: the webhook door's refusals ------------------------------------------------------------------------------


async def post_raw(w: Scene, client: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    assert w.bridge.http is not None
    async with w.bridge.http.post(f"{w.bridge.base}/channels/webhook/{client}", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


def event(user: str, kind: str = "message", text: str | None = "hi", meeting: str = CODE) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind, "user": {"id": user, "displayName": user.title()}, "meeting": meeting}
    if text is not None:
        body["text"] = text
    return body


async def test_webhook_door_refusals_store_nothing(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async with scene(control, info, tmp_path, extra_secrets=1, max_message_bytes=64, allow=["webhook:app/ann"]) as w:
        used: list[str] = []

        async def attempt(
            payload: bytes | dict[str, Any],
            *,
            secret: str | None = None,
            client: str = "app",
            when: datetime | None = None,
            headers: dict[str, str] | None = None,
        ) -> tuple[int, dict[str, Any]]:
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            msg_id = f"msg_{uuid.uuid4().hex}"
            used.append(msg_id)
            signed = sign(secret or w.secret, msg_id, raw.decode("utf-8", "replace"), when)
            return await post_raw(w, client, raw, signed if headers is None else headers)

        # 401: signed with a secret the client does not have, no headers, a timestamp 10 minutes old.
        status, body = await attempt(event("ann", "join", None), secret=new_secret())
        assert status == 401 and body["error"] == "bad_signature" and body["reason"], body
        status, body = await attempt(event("ann", "join", None), headers={"Content-Type": "application/json"})
        assert status == 401 and "missing" in body["reason"], body
        old = datetime.now(UTC) - timedelta(minutes=10)
        status, body = await attempt(event("ann", "join", None), when=old)
        assert status == 401 and "timestamp" in body["reason"], body

        # 400: not JSON, wrong types, missing or unknown fields; the reason names the field.
        status, body = await attempt(b"{not json")
        assert status == 400 and body["error"] == "bad_request", body
        status, body = await attempt({"type": "message", "user": {"id": 5}, "meeting": CODE, "text": "x"})
        assert status == 400 and body["reason"].startswith("user.id"), body
        status, body = await attempt({"type": "message", "user": {"id": "ann"}, "text": "x"})
        assert status == 400 and body["reason"].startswith("meeting"), body
        status, body = await attempt({"type": "dance", "user": {"id": "ann"}, "meeting": CODE})
        assert status == 400 and body["reason"].startswith("type"), body
        status, body = await attempt(event("ann", text=" "))
        assert status == 400 and body["reason"].startswith("text"), body

        # 404: unknown client, unknown meeting code.
        status, body = await attempt(event("ann", "join", None), client="nobody")
        assert status == 404 and body["error"] == "unknown_client", body
        status, body = await attempt(event("ann", "join", None, meeting="999999"))
        assert status == 404 and body["error"] == "unknown_meeting", body
        status, body = await attempt(event("ann", text="hello", meeting="999999"))
        assert status == 404 and body["error"] == "unknown_meeting", body

        # 403: bob is not on the meeting's allow-list.
        status, body = await attempt(event("bob", "join", None))
        assert status == 403 and body["error"] == "not_allowed", body
        status, body = await attempt(event("bob", text="let me in"))
        assert status == 403 and body["error"] == "not_allowed", body

        # 413: longer than the client's max_message_bytes (64), counted in UTF-8 bytes.
        status, body = await attempt(event("ann", text="é" * 33))
        assert status == 413 and body["error"] == "too_large", body

        store = w.bridge.store
        assert await store.deliveries() == []
        assert await store.sessions() == []
        for user in ("ann", "bob"):
            assert await store.get_user(f"webhook:app/{user}") is None, user
        for msg_id in used:
            assert await store.inbox_answer("webhook:app", msg_id) is None, msg_id

        # A rotated secret: the client's second secret signs, and the request is accepted.
        rotated = w.receiver.client.secrets[1].get_secret_value()
        status, body = await w.bridge.send("app", rotated, event("ann", "join", None))
        assert status == 202 and body["id"].startswith("session-"), body
        await w.until_state("ann", SessionState.IN_CALL)
