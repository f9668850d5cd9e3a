"""Simulated phones and the sandbox number's SMS rules: E.164, segments, opt-out keywords, repeatable sends."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from .errors import bad_request
from .util import JsonDict, iso, new_guid, now

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MAX_MESSAGE_BYTES = 2048
# US carrier keywords; the whole message is the keyword, as carriers match it.
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_WORDS = frozenset({"START", "UNSTOP", "YES"})
# ACS tracks repeatable requests for 5 minutes; an older first-sent time is unsafe to re-run (412).
REPEATABILITY_WINDOW_S = 5 * 60

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def is_e164(number: object) -> bool:
    return isinstance(number, str) and E164.fullmatch(number) is not None


def encoded_size(text: str) -> tuple[int, int]:
    """(segments, bytes) of text on the wire: GSM-7 when every character allows it, UCS-2 otherwise."""
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in text):
        septets = sum(2 if c in _GSM7_EXTENDED else 1 for c in text)
        segments = 1 if septets <= 160 else math.ceil(septets / 153)
        return segments, math.ceil(septets * 7 / 8)
    units = len(text.encode("utf-16-le")) // 2
    segments = 1 if units <= 70 else math.ceil(units / 67)
    return segments, units * 2


def check_message(message: object) -> int:
    """The segment count of a message body, or 400 when it is missing, empty or over ACS's 2048 bytes."""
    if not isinstance(message, str) or not message:
        raise bad_request("message is required and must be a non-empty string.")
    segments, size = encoded_size(message)
    if size > MAX_MESSAGE_BYTES:
        raise bad_request(
            f"The message is too long: {size} bytes in {segments} segments; at most {MAX_MESSAGE_BYTES} bytes."
        )
    return segments


def _message_id(direction: str) -> str:
    # The live service's shape: Outgoing_<yyyyMMddHHmmss><guid>_noam.
    return f"{direction}_{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}{new_guid()}_noam"


def keyword(message: str) -> str:
    return message.strip().strip(".!").upper()


@dataclass(frozen=True)
class Sms:
    """One text as a phone (or the sandbox number) received it."""

    message_id: str
    sender: str
    recipient: str
    message: str
    received: float
    segment_count: int
    tag: str | None = None

    def to_json(self) -> JsonDict:
        return {
            "messageId": self.message_id,
            "from": self.sender,
            "to": self.recipient,
            "message": self.message,
            "receivedTimestamp": iso(self.received),
            "segmentCount": self.segment_count,
            "tag": self.tag,
        }


@dataclass(frozen=True)
class _Repeatable:
    first_sent: str
    sent_at: float
    to: str
    result: JsonDict


@dataclass(frozen=True)
class SendOutcome:
    result: JsonDict
    """The per-recipient item of the 202 answer."""
    delivered: Sms | None
    """The text the phone received, or None when nothing was (newly) delivered."""


def _failure(to: str, status: int, message: str, repeatability: str | None = None) -> JsonDict:
    item: JsonDict = {"to": to, "httpStatusCode": status, "successful": False, "errorMessage": message}
    if repeatability is not None:
        item["repeatabilityResult"] = repeatability
    return item


@dataclass(frozen=True)
class OtherNumber:
    """A number another gateway stand-in owns (the Twilio one): its inbound message ids and who takes texts to it."""

    new_id: Callable[[], str]
    on_text: Callable[[Sms], None]


class Phones:
    """The phones that talk to the sandbox number: their inboxes, opt-outs, and the record of repeatable sends."""

    def __init__(self, sms_number: str) -> None:
        self.sms_number = sms_number
        self.other_numbers: dict[str, OtherNumber] = {}
        self.reset()

    def add_number(self, number: str, owner: OtherNumber) -> None:
        """Phones may text this number too; opt-outs are shared, texts to it go to its owner, not to SMSReceived."""
        if number == self.sms_number or number in self.other_numbers:
            raise ValueError(f"{number} is already a sandbox number")
        self.other_numbers[number] = owner

    def reset(self) -> None:
        self.inboxes: dict[str, list[Sms]] = {}
        self.opted_out: set[str] = set()
        self._repeatable: dict[str, _Repeatable] = {}

    def check_sender(self, sender: object) -> str:
        if not is_e164(sender):
            raise bad_request("from must be a phone number in E.164 format, for example +18005550100.")
        assert isinstance(sender, str)
        if sender != self.sms_number:
            raise bad_request(
                f"from {sender} is not a phone number of this Communication Services resource; "
                f"the sandbox's number is {self.sms_number}."
            )
        return sender

    def inbox(self, phone: str) -> list[Sms]:
        return list(self.inboxes.get(phone, ()))

    def text_in(self, phone: str, to: object, message: object) -> Sms:
        """A phone texts one of the sandbox numbers; carrier keywords change its opt-out state (shared by both)."""
        if not is_e164(phone):
            raise bad_request(f"{phone} is not a phone number in E.164 format (+ and 7-15 digits).")
        other = self.other_numbers.get(to) if isinstance(to, str) else None
        if to != self.sms_number and other is None:
            numbers = ", ".join([self.sms_number, *self.other_numbers])
            raise bad_request(f"to must be one of the sandbox's numbers: {numbers}.")
        if phone == self.sms_number or phone in self.other_numbers:
            raise bad_request("A sandbox number cannot text itself.")
        segments = check_message(message)
        assert isinstance(message, str)
        word = keyword(message)
        if word in OPT_OUT_WORDS:
            self.opted_out.add(phone)
        elif word in OPT_IN_WORDS:
            self.opted_out.discard(phone)
        if other is None:
            return Sms(_message_id("Incoming"), phone, self.sms_number, message, now(), segments)
        sms = Sms(other.new_id(), phone, str(to), message, now(), segments)
        other.on_text(sms)
        return sms

    def send(self, sender: str, recipient: object, message: str, segments: int, tag: str | None) -> SendOutcome:
        """One recipient of POST /sms: validate, answer a repeat with the first result, else deliver."""
        if not isinstance(recipient, dict) or not isinstance(recipient.get("to"), str):
            raise bad_request('Each of smsRecipients must be an object with a "to" string.')
        to = str(recipient["to"])
        if not is_e164(to):
            return SendOutcome(_failure(to, 400, "Invalid To phone number format."), None)
        request_id = recipient.get("repeatabilityRequestId")
        first_sent = recipient.get("repeatabilityFirstSent")
        if request_id is None and first_sent is None:
            return self._deliver(sender, to, message, segments, tag, None)
        if not isinstance(request_id, str) or not request_id or not isinstance(first_sent, str):
            return SendOutcome(
                _failure(to, 400, "repeatabilityRequestId and repeatabilityFirstSent must both be given.", "rejected"),
                None,
            )
        try:
            parsed = parsedate_to_datetime(first_sent)
            sent_at = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
        except (TypeError, ValueError):
            return SendOutcome(
                _failure(to, 400, "repeatabilityFirstSent must be an RFC 1123 (IMF-fixdate) time.", "rejected"), None
            )
        if abs(now() - sent_at) > REPEATABILITY_WINDOW_S:
            return SendOutcome(
                _failure(to, 412, "repeatabilityFirstSent is not within the 5 minute tracking window.", "rejected"),
                None,
            )
        self._forget_before(now() - REPEATABILITY_WINDOW_S)
        earlier = self._repeatable.get(request_id)
        if earlier is not None:
            if earlier.first_sent != first_sent or earlier.to != to:
                message_text = "repeatabilityRequestId was used before with a different first-sent time or recipient."
                return SendOutcome(_failure(to, 400, message_text, "rejected"), None)
            return SendOutcome(dict(earlier.result), None)
        outcome = self._deliver(sender, to, message, segments, tag, "accepted")
        self._repeatable[request_id] = _Repeatable(first_sent, sent_at, to, outcome.result)
        return outcome

    def _forget_before(self, cutoff: float) -> None:
        # A repeat that old is rejected with 412 anyway, so its record can go.
        for request_id in [k for k, v in self._repeatable.items() if v.sent_at < cutoff]:
            del self._repeatable[request_id]

    def _deliver(
        self, sender: str, to: str, message: str, segments: int, tag: str | None, repeatability: str | None
    ) -> SendOutcome:
        if to in self.opted_out:
            text = "Sender blocked for given recipient: the recipient opted out (texted STOP) and must text START."
            return SendOutcome(_failure(to, 403, text, repeatability), None)
        sms = Sms(_message_id("Outgoing"), sender, to, message, now(), segments, tag)
        self.inboxes.setdefault(to, []).append(sms)
        result: JsonDict = {"to": to, "messageId": sms.message_id, "httpStatusCode": 202, "successful": True}
        if repeatability is not None:
            result["repeatabilityResult"] = repeatability
        return SendOutcome(result, sms)
