"""Page connections of the stand-in Calling SDK: one WebSocket per CallAgent, the legs it holds, token expiry, and
the grace period a leg outlives its vanished page by."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from ..errors import SandboxError
from ..meetings import ENDED_FOR_ALL, FINAL_LEG_STATES, VANISHED, CallLeg
from ..tokens import TOKEN_EXPIRED, AcsClaims
from ..util import JsonDict, iso
from ..world import World

log = logging.getLogger(__name__)

MAX_DISPLAY_NAME = 256
DEFAULT_DISPLAY_NAME = "Guest"
# Close codes the stand-in tells apart (4000-4999 are the application's own).
CLOSE_REFUSED = 4001
CLOSE_TOKEN_EXPIRED = 4401
CLOSE_RESET = 4002


class Refusal(Exception):
    """createCallAgent fails: the SDK's error (code, subCode, message), sent before the connection closes."""

    def __init__(self, code: int, sub_code: int, message: str) -> None:
        super().__init__(message)
        self.body: JsonDict = {"type": "refused", "code": code, "subCode": sub_code, "message": message}


def refusal_for(exc: SandboxError) -> Refusal:
    """The Calling SDK's error for a token the service refused."""
    if exc.status == 403:
        return Refusal(401, 44113, "AccessToken does not contain 'voip' or 'voip.join' scope")
    if exc.message == TOKEN_EXPIRED:
        return Refusal(401, 40235, "AccessToken expired")
    return Refusal(401, 44111, "Invalid token")


def join_failure(exc: SandboxError, world: World) -> tuple[int, int]:
    """The call-end reason a join the service refused ends with."""
    if exc.code == "InteropNotEnabled" and world.call_settings.interop_refusal is not None:
        return 403, world.call_settings.interop_refusal
    if exc.code == "MeetingEnded":
        return ENDED_FOR_ALL
    return exc.status, 0  # not a documented code: the bridge records and shows it


@dataclass(eq=False)  # compared and hashed by identity: it sits in legs' watcher sets
class AgentSession:
    """One CallAgent's live connection. Leg changes and replies go through one queue to one writer."""

    identity: str
    display_name: str
    expires_on: float
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    connected_on: float = field(default_factory=time.time)
    legs: dict[str, CallLeg] = field(default_factory=dict)
    threads: dict[str, str] = field(default_factory=dict)
    token_refreshes: int = 0
    forgotten: bool = False
    """Set by a reset or shutdown: the world the legs lived in is gone, so the connection's end changes nothing."""
    outbox: asyncio.Queue[JsonDict | None] = field(default_factory=asyncio.Queue)

    def send(self, message: JsonDict) -> None:
        self.outbox.put_nowait(message)

    def put_nowait(self, item: JsonDict, /) -> None:
        """A change of one of this agent's legs (LegWatcher), forwarded as a call message."""
        call_id = str(item["callId"])
        self.send({"type": "call", **item, "threadId": self.threads.get(call_id)})
        if item["state"] in FINAL_LEG_STATES:
            leg = self.legs.pop(call_id, None)
            if leg is not None:
                leg.watchers.discard(self)

    def hold(self, leg: CallLeg, thread_id: str) -> None:
        self.legs[leg.id] = leg
        self.threads[leg.id] = thread_id
        leg.watchers.add(self)
        self.put_nowait(leg.snapshot())

    def release(self) -> list[CallLeg]:
        """Stop watching; the legs still in the call."""
        active = [leg for leg in self.legs.values() if leg.state not in FINAL_LEG_STATES]
        for leg in self.legs.values():
            leg.watchers.discard(self)
        self.legs.clear()
        return active

    def cut(self) -> None:
        """The network drops: the connection ends without a close handshake."""
        if self.transport is not None:
            self.transport.abort()

    def to_json(self) -> JsonDict:
        return {
            "identity": self.identity,
            "displayName": self.display_name,
            "connectedOn": iso(self.connected_on),
            "tokenExpiresOn": iso(self.expires_on),
            "tokenRefreshes": self.token_refreshes,
            "calls": sorted(self.legs),
        }


@dataclass
class Lingering:
    """A leg whose page connection vanished; dropped when the grace period from its vanishing runs out."""

    leg: CallLeg
    vanished_at: float
    timer: asyncio.TimerHandle | None = None

    def drops_at(self, grace_s: float) -> float:
        return self.vanished_at + grace_s

    def to_json(self, grace_s: float) -> JsonDict:
        return {"callId": self.leg.id, "identity": self.leg.identity, "dropsAt": iso(self.drops_at(grace_s))}


class AgentRegistry:
    """Live page connections by identity (one CallAgent per identity anywhere) and legs whose page vanished."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.sessions: dict[str, AgentSession] = {}
        self.lingering: dict[str, Lingering] = {}

    def open(
        self, claims: AcsClaims, display_name: str | None, ws: web.WebSocketResponse, request: web.Request
    ) -> AgentSession:
        name = DEFAULT_DISPLAY_NAME if display_name is None else display_name.strip() or DEFAULT_DISPLAY_NAME
        if len(name) > MAX_DISPLAY_NAME:
            raise Refusal(400, 40215, "Display name is too long.")
        if claims.identity in self.sessions:
            raise Refusal(
                409,
                40228,
                "Failed to create CallAgent, an instance of CallAgent associated with this identity already exists. "
                "Please dispose the existing CallAgent, or create a new one with a different identity.",
            )
        session = AgentSession(claims.identity, name, claims.expires_on, ws, request.transport)
        self.sessions[claims.identity] = session
        session.send({"type": "ready", "identity": claims.identity, "tokenExpiresOn": iso(claims.expires_on)})
        return session

    def handle(self, session: AgentSession, raw: str) -> bool:
        """One message from the page; False once it said goodbye (CallAgent.dispose)."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        kind = body.get("type") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(kind, str):
            session.send({"type": "error", "reason": 'Each message must be a JSON object with a "type".'})
            return True
        if kind == "bye":
            return False
        handler = {"join": self._join, "hangUp": self._hang_up, "audio": self._audio, "token": self._token}.get(kind)
        if handler is None:
            session.send({"type": "error", "reason": f"Unknown message type {kind[:40]!r}."})
            return True
        try:
            handler(session, body)
        except SandboxError as exc:
            session.send({"type": "error", "reason": exc.message})
        return True

    def _call_id(self, body: JsonDict) -> str:
        call_id = body.get("callId")
        try:
            return str(uuid.UUID(str(call_id))) if isinstance(call_id, str) and len(call_id) <= 64 else ""
        except ValueError:
            return ""

    def _join(self, session: AgentSession, body: JsonDict) -> None:
        call_id = self._call_id(body)
        if not call_id:
            raise SandboxError(400, "BadRequest", "callId must be a UUID.")
        link, meeting_id, passcode = (body.get(k) for k in ("meetingLink", "meetingId", "passcode"))
        try:
            if not isinstance(link, str) and not isinstance(meeting_id, str):
                raise SandboxError(400, "BadRequest", "Give meetingLink, or meetingId with passcode.")
            meeting = self.world.find_meeting(
                link if isinstance(link, str) else None,
                meeting_id if isinstance(meeting_id, str) and not isinstance(link, str) else None,
                passcode if isinstance(passcode, str) else None,
            )
            leg = self.world.join_call(
                meeting, session.identity, session.display_name, call_id, muted=body.get("muted") is True
            )
        except SandboxError as exc:
            code, sub_code = join_failure(exc, self.world)
            session.send(
                {
                    "type": "call",
                    "callId": call_id,
                    "state": "failed",
                    "callEndReason": {"code": code, "subCode": sub_code},
                    "reason": exc.message,
                }
            )
            return
        session.hold(leg, meeting.thread_id)

    def _leg(self, session: AgentSession, body: JsonDict) -> CallLeg | None:
        return session.legs.get(self._call_id(body))

    def _hang_up(self, session: AgentSession, body: JsonDict) -> None:
        leg = self._leg(session, body)
        if leg is not None:
            self.world.leave_call(leg)

    def _audio(self, session: AgentSession, body: JsonDict) -> None:
        leg = self._leg(session, body)
        if leg is None:
            return
        if isinstance(body.get("muted"), bool):
            leg.muted = body["muted"]
        if isinstance(body.get("incomingAudioMuted"), bool):
            leg.incoming_audio_muted = body["incomingAudioMuted"]

    def _token(self, session: AgentSession, body: JsonDict) -> None:
        """A refreshed token on the live connection; one the service refuses leaves the old one in force."""
        token = body.get("token")
        try:
            if not isinstance(token, str):
                raise SandboxError(400, "BadRequest", "token must be a string.")
            claims = self.world.authenticate(token, "voip")
            if claims.identity != session.identity:
                raise SandboxError(400, "BadRequest", "Refreshed AccessToken User Id doesnt match initial User Id.")
        except SandboxError as exc:
            session.send({"type": "tokenRefused", "reason": exc.message})
            return
        session.expires_on = max(session.expires_on, claims.expires_on)
        session.token_refreshes += 1
        session.send({"type": "token", "tokenExpiresOn": iso(session.expires_on)})

    def expire(self, session: AgentSession) -> None:
        """The token ran out and no valid one came: the service ends the agent's calls 495/4507."""
        for leg in list(session.legs.values()):
            self.world.refuse_token(leg)
        session.send({"type": "disconnected", "reason": "invalidToken"})

    def close(self, session: AgentSession, *, goodbye: bool) -> None:
        """The connection ended: after a goodbye its calls leave; otherwise they linger for the grace period."""
        if self.sessions.get(session.identity) is session:
            del self.sessions[session.identity]
        active = session.release()
        if session.forgotten or not active:
            return
        if goodbye:
            for leg in active:
                self.world.leave_call(leg)
            return
        for leg in active:
            self.lingering[leg.id] = Lingering(leg, time.time())
        self.regrace()

    def regrace(self) -> None:
        """(Re)arm every lingering leg's drop for the grace period in force, counted from when it vanished."""
        loop = asyncio.get_running_loop()
        grace = self.world.call_settings.grace_s
        for item in self.lingering.values():
            if item.timer is not None:
                item.timer.cancel()
            delay = max(0.0, item.drops_at(grace) - time.time())
            item.timer = loop.call_later(delay, self._drop, item.leg.id, grace)

    def _drop(self, leg_id: str, grace: float) -> None:
        item = self.lingering.pop(leg_id, None)
        if item is not None:
            reason = f"the client vanished; dropped after {grace:g} s without its connection"
            self.world.end_leg(item.leg, VANISHED, reason)

    def forget(self) -> None:
        """A reset: every connection is cut and forgotten, and no lingering leg is dropped into the new world."""
        for session in list(self.sessions.values()):
            session.forgotten = True
            session.cut()
        self.sessions.clear()
        for item in self.lingering.values():
            if item.timer is not None:
                item.timer.cancel()
        self.lingering.clear()

    async def shutdown(self, _: web.Application) -> None:
        sessions = list(self.sessions.values())
        self.forget()
        for session in sessions:
            await session.ws.close()


async def writer(session: AgentSession) -> None:
    """The connection's only writer: messages in order until None, then returns."""
    while (message := await session.outbox.get()) is not None:
        try:
            await session.ws.send_json(message)
        except (ConnectionError, RuntimeError):
            return
