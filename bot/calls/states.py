"""The Calling SDK's call states and call-end codes, mapped once to what the bridge does about them (pure).

Every connector that learns a callEndReason reads it here (the browser connector from the SDK, the sandbox
connector from the sandbox's leg snapshots). README's "Call states" table is this module in prose.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..models import CallState


class Verdict(StrEnum):
    """What one SDK observation means for the bridge's call leg."""

    JOINING = "joining"
    """Still on its way in: ``join`` waits through it; ``watch`` reports nothing."""
    LOBBY = "lobby"
    CONNECTED = "connected"
    LEFT = "left"
    """Our own hang-up."""
    ENDED = "ended"
    REMOVED = "removed"
    DROPPED = "dropped"
    """Lost without anyone meaning it (network, media, the browser): joined again with backoff."""
    NEW_TOKEN = "new_token"
    """The service refused the leg's token: a newly issued one, then a re-join."""
    FAILED = "failed"
    """Final: retrying cannot help; the reason says what an operator or the user can do."""


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reason: str | None = None


FINAL_STATE: dict[Verdict, CallState] = {
    Verdict.LEFT: CallState.LEFT,
    Verdict.ENDED: CallState.ENDED,
    Verdict.REMOVED: CallState.REMOVED,
    Verdict.DROPPED: CallState.DROPPED,
    Verdict.NEW_TOKEN: CallState.DROPPED,
    Verdict.FAILED: CallState.FAILED,
}
"""The state a leg ends in, for each verdict that ends one (the port's CallState)."""

CALL_STATES: dict[str, Verdict] = {
    "None": Verdict.JOINING,
    "Connecting": Verdict.JOINING,
    "Ringing": Verdict.JOINING,
    "EarlyMedia": Verdict.JOINING,
    "InLobby": Verdict.LOBBY,
    "Connected": Verdict.CONNECTED,
    "LocalHold": Verdict.CONNECTED,
    "RemoteHold": Verdict.CONNECTED,
}
"""``call.state`` before ``Disconnected``; ``Disconnecting`` (and any state a newer SDK adds) changes nothing."""

_INTEROP = (
    "Teams refused this ACS resource ({code}/{sub}): the meeting's tenant blocks ACS users or the resource is not "
    "enabled for Teams interop; an operator must allow it (Teams meeting policy, the ACS resource)"
)

END_CODES: dict[tuple[int, int | None], Outcome] = {
    (0, 0): Outcome(Verdict.LEFT),
    (0, 4097): Outcome(Verdict.ENDED, "the meeting has ended"),
    (0, 5000): Outcome(Verdict.REMOVED, "removed by a participant"),
    (0, 5300): Outcome(Verdict.REMOVED, "removed by a participant"),
    (0, 4521): Outcome(Verdict.DROPPED, "the call was cut off (0/4521)"),
    # Ended by the platform: a re-join finds out whether the meeting itself is over.
    (0, 7000): Outcome(Verdict.DROPPED, "the call was ended by the service (0/7000)"),
    (410, None): Outcome(Verdict.DROPPED, "media or network connectivity was lost ({code}/{sub})"),
    (490, None): Outcome(Verdict.DROPPED, "a network error cut the call ({code}/{sub})"),
    (495, 4507): Outcome(Verdict.NEW_TOKEN, "the service refused the call's token (495/4507)"),
    (403, 5221): Outcome(Verdict.FAILED, _INTEROP),
    (403, 5222): Outcome(Verdict.FAILED, _INTEROP),
    (200, 5855): Outcome(Verdict.FAILED, "nobody admitted you from the lobby in time"),
}
"""``callEndReason`` {code, subCode}; a None subCode matches every subCode of its code."""


def call_state(state: object) -> Verdict | None:
    """The verdict for a ``call.state`` other than Disconnected; None when it changes nothing."""
    return CALL_STATES.get(state) if isinstance(state, str) else None


def end_reason(code: object, sub_code: object) -> Outcome:
    """The verdict for a call that reached Disconnected with this ``callEndReason``."""
    c, s = _int(code), _int(sub_code)
    if c is None:
        return Outcome(Verdict.FAILED, "the call ended without an end code")
    found = END_CODES.get((c, s)) or END_CODES.get((c, None))
    if found is None:
        # Recorded with both numbers, so an operator can look the code up in Microsoft's troubleshooting table.
        return Outcome(Verdict.FAILED, f"the call ended with code {c}/{_sub(s)}, which the bridge does not know")
    if found.reason is None:
        return found
    return Outcome(found.verdict, found.reason.format(code=c, sub=_sub(s)))


def connection_lost(reason: object) -> Outcome:
    """The call agent's ``connectionState`` went Disconnected: its leg is gone with it."""
    if reason == "invalidToken":
        return Outcome(Verdict.NEW_TOKEN, "the service refused the call agent's token")
    return Outcome(Verdict.DROPPED, "the call agent lost its connection to the service")


def join_error(code: object, sub_code: object, message: str) -> Outcome:
    """The verdict for an error thrown before the call existed (``createCallAgent`` or ``join`` threw)."""
    c = _int(code)
    where = f" ({c}/{_sub(_int(sub_code))})" if c is not None else ""
    if c == 401:
        return Outcome(Verdict.NEW_TOKEN, f"the service refused the call agent's token{where}")
    if c is not None and 400 <= c < 500 and c not in (408, 409, 429):
        return Outcome(Verdict.FAILED, f"the call could not be joined: {message}{where}")
    # No code (a script error), a timeout, a conflict with an agent still being disposed, throttling, 5xx.
    return Outcome(Verdict.DROPPED, f"the call could not be joined: {message}{where}")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sub(sub_code: int | None) -> str:
    return "-" if sub_code is None else str(sub_code)
