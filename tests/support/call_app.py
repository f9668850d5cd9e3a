"""A webhook client's app that holds its users' call legs itself, as one running the Calling SDK does: it joins the
sandbox meeting's call as the user's ACS identity and reports each state to the bridge (calls.connector =
"client_reported")."""

from __future__ import annotations

from typing import Any

from azure.communication.identity import CommunicationUserIdentifier

from tests.support.acs import identity_client
from tests.support.bridge import Bridge, wait_for
from tests.support.sandbox import Control

Json = dict[str, Any]


class CallApp:
    """The app of webhook client `client`: its users' call legs in the sandbox, and its signed reports of them."""

    def __init__(self, control: Control, bridge: Bridge, secret: str, code: str, client: str = "app") -> None:
        self.control = control
        self.bridge = bridge
        self.secret = secret
        self.code = code
        self.client = client
        self.calls: dict[str, str] = {}
        """The user's current call in the sandbox, by user id (the leg id is the app's own call id)."""

    async def auth(self, user: str) -> dict[str, str]:
        """A voip token for the ACS identity the bridge speaks for the user with. The app's backend issues it with
        the ACS resource's own access, reading the identity from the bridge (here: its store)."""
        stored = await self.bridge.store.get_user(f"webhook:{self.client}/{user}")
        assert stored is not None and stored.identity_id is not None, f"{user} has no identity yet"
        async with identity_client(self.control.info) as identities:
            token = await identities.get_token(CommunicationUserIdentifier(stored.identity_id), scopes=["voip"])
        return {"Authorization": f"Bearer {token.token}"}

    async def join_call(self, user: str, meeting: Json, name: str | None = None) -> str:
        """Join the meeting's call as the user (its lobby or the call, as the meeting admits); the call's id."""
        body = {"displayName": name or f"{user.title()} ({self.client})", "meetingLink": meeting["joinWebUrl"]}
        leg = await self.control.ok("POST", "/sandbox/v1/calls", body, headers=await self.auth(user))
        self.calls[user] = str(leg["callId"])
        return self.calls[user]

    async def call_state(self, user: str, call_id: str | None = None) -> str:
        leg = await self.control.ok(
            "GET", f"/sandbox/v1/calls/{call_id or self.calls[user]}", headers=await self.auth(user)
        )
        return str(leg["state"])

    async def until_call(self, user: str, state: str) -> None:
        async def reached() -> bool:
            return await self.call_state(user) == state

        await wait_for(reached, what=f"{user}'s own call {state}")

    async def hang_up(self, user: str) -> None:
        status, body = await self.control.call(
            "DELETE", f"/sandbox/v1/calls/{self.calls[user]}", headers=await self.auth(user)
        )
        assert status == 204, (status, body)

    def event(self, user: str, state: str, call_id: str | None = None) -> Json:
        event: Json = {"type": "call", "user": {"id": user}, "meeting": self.code, "state": state}
        if call_id is not None:
            event["callId"] = call_id
        return event

    async def report(
        self, user: str, state: str, *, call_id: str | None = None, webhook_id: str | None = None
    ) -> tuple[int, Json]:
        """Report the user's call as being in `state`, naming the app's current call unless told another."""
        named = call_id or self.calls.get(user)
        return await self.bridge.send(self.client, self.secret, self.event(user, state, named), webhook_id)

    async def reported(self, user: str, state: str, **kwargs: Any) -> Json:
        status, body = await self.report(user, state, **kwargs)
        assert status == 202, (status, body)
        return body
