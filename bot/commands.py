"""SMS keywords (pure): parsing a text into a command, validating display names, the configurable replies."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from .formatting import clean_name
from .models import SessionState


@dataclass(frozen=True)
class Join:
    code: str | None
    """The meeting's join code, digits only; None for a bare JOIN (fine when the number is invited once)."""


@dataclass(frozen=True)
class Leave:
    """End the session in the current meeting."""


@dataclass(frozen=True)
class Stop:
    """Opt out of everything (carrier keyword): confirm once, then send nothing more until Start."""


@dataclass(frozen=True)
class Start:
    """Opt back in (carrier keyword)."""


@dataclass(frozen=True)
class Help:
    """How to use the bridge (carrier keyword)."""


@dataclass(frozen=True)
class Name:
    name: str
    """As typed, whitespace collapsed; "" for a bare NAME. Check it with validate_name before using it."""


@dataclass(frozen=True)
class Status:
    """Which meeting, in what state, under which name."""


@dataclass(frozen=True)
class Chat:
    text: str
    """The message exactly as received."""


Command = Join | Leave | Stop | Start | Help | Name | Status | Chat

# US carrier keywords (CTIA): these opt out and back in whatever the bridge thinks of them.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})
_BARE: dict[str, Command] = {
    **dict.fromkeys(STOP_WORDS, Stop()),
    **dict.fromkeys(START_WORDS, Start()),
    **dict.fromkeys(HELP_WORDS, Help()),
    "LEAVE": Leave(),
    "STATUS": Status(),
}
# Carriers match "STOP." and "Stop!" as STOP; matching a little more ("stop?") only errs towards honouring it.
_PUNCTUATION = ".!?"
# Join codes are written as printed: "123 456", "123-456", "#123456".
_CODE = re.compile(r"#?[0-9]+(?:[ .\-][0-9]+)*")
_CODE_MAX_DIGITS = 16


def parse(text: str, *, opted_out: bool = False) -> Command:
    """The command a text is, or Chat. Never raises.

    A keyword counts only when it is the whole message (with its argument): "stop" and "Stop!" are Stop,
    "Stop by my office" is chat. Case and surrounding whitespace do not matter. JOIN takes a code of digits,
    which may be grouped with spaces, dots or dashes ("join 12 34 56" is Join("123456")); "join us at 3" is
    chat. YES is Start only for an opted-out number (carriers treat it as opt-in), otherwise the common
    reply "yes" would never reach the meeting.
    """
    words = text.split(maxsplit=1)
    if not words:
        return Chat(text)
    # NFKC so full-width letters count; then ASCII only: "qu\u0131t" (dotless i) upper-cases to "QUIT" yet is no STOP.
    word = unicodedata.normalize("NFKC", words[0])
    argument = words[1].strip() if len(words) > 1 else ""
    if not argument.strip(_PUNCTUATION):
        word, argument = word.strip(_PUNCTUATION), ""
    if not word.isascii():
        return Chat(text)
    word = word.upper()
    if word in ("JOIN:", "NAME:"):
        word = word[:-1]
    if word == "NAME":
        return Name(" ".join(argument.split()))
    if word == "JOIN":
        return _join(argument, text)
    if argument:
        return Chat(text)
    if word == "YES" and not opted_out:
        return Chat(text)
    return _BARE.get(word, Chat(text))


def _join(argument: str, text: str) -> Command:
    code = unicodedata.normalize("NFKC", argument).rstrip(_PUNCTUATION).strip()
    if not code:
        return Join(None)
    if not code.isascii() or not _CODE.fullmatch(code):
        return Chat(text)
    digits = "".join(ch for ch in code if ch.isdigit())
    return Join(digits) if len(digits) <= _CODE_MAX_DIGITS else Chat(text)


def validate_name(name: str, max_chars: int) -> str | None:
    """Why a display name cannot be used, in words that fit the name_invalid reply; None when it can. What is
    checked, and what is then used, is the name cleaned as every channel cleans one (`clean_name`): invisible
    characters taken out, so one that is nothing but them is empty."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    name = clean_name(name)
    if not name:
        return "it is empty"
    if len(name) > max_chars:
        return f"it is longer than {max_chars} characters"
    if "<" in name or ">" in name:
        return "it has < or >"
    if not any(unicodedata.category(ch).startswith("L") for ch in name):
        return "it has no letters"
    return None


# ---------------------------------------------------------------- replies

DEFAULT_TEXTS: dict[str, str] = {
    "help": (
        "Meeting bridge: JOIN <code> joins a meeting, LEAVE leaves it, NAME <your name> sets your name, STATUS"
        " checks. Other texts go to the meeting. STOP opts out."
    ),
    "stop": "You're unsubscribed from the meeting bridge and will get no more texts. Reply START to resubscribe.",
    "start": "You're subscribed to the meeting bridge again. Text JOIN and a meeting code to join, HELP for help.",
    "join_usage": "To join a meeting, text JOIN and its code, for example JOIN 123456.",
    "joined": "Joining {meeting}. We'll text you when you're in; text LEAVE to leave, HELP for help.",
    "unknown_meeting": "No meeting has the code {code}. Check the code and text JOIN and the code again.",
    "not_allowed": "Sorry, this number can't join that meeting.",
    "left": "You've left {meeting}. Text JOIN and the code to join again.",
    "no_session": "You're not in a meeting, so your text wasn't sent. Text JOIN and the code to join one.",
    "name_set": "Done: the meeting will see you as {name}.",
    "name_invalid": "That name can't be used: {reason}. Text NAME and your name, for example NAME Ann Lee.",
    "budget": "You've reached this hour's text limit. More meeting messages will follow when the hour has room.",
    "status_none": "You're not in a meeting. Text JOIN and the code to join one.",
    "status": "{meeting}: {state}. Text LEAVE to leave, HELP for help.",
}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_STATE_WORDS: dict[str, str] = {
    SessionState.REQUESTED: "waiting to join",
    SessionState.JOINING: "connecting",
    SessionState.LOBBY: "waiting in the lobby",
    SessionState.IN_CALL: "connected",
    SessionState.LEFT: "left",
    SessionState.ENDED: "the meeting has ended",
    SessionState.FAILED: "could not connect",
}


def reply(key: str, overrides: Mapping[str, str], **values: object) -> str:
    """The reply for key: the operator's override unless blank, else the default, with {placeholders} filled.

    Only `{word}` placeholders are filled, in one pass; any other brace, or a placeholder without a value, is
    left as written, so an operator's typo shows in the text instead of failing the reply. A blank override
    falls back to the default: an empty setting must not silence the STOP confirmation carriers require.
    KeyError for a key that has neither.
    """
    template = overrides.get(key)
    if template is None or not template.strip():
        template = DEFAULT_TEXTS[key]

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(values[name]) if name in values else match.group(0)

    return _PLACEHOLDER.sub(fill, template)


def describe_state(state: str) -> str:
    """A session state in the words a status reply uses."""
    return _STATE_WORDS.get(str(state), str(state))
