"""Event Grid's delivery faults in the sandbox: events lost before any try, or delivered twice and out of order."""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass, field

from .bus import SandboxEvent
from .errors import bad_request
from .util import JsonDict

MAX_DELAY_S = 60.0


@dataclass
class DeliveryFaults:
    """What goes wrong between the topic and the endpoint, for events whose subject matches `subject` (a glob):
    some are lost, never tried; some are delivered twice, the copy (same event id) a little later, so it may
    overtake events raised after it. Event Grid promises neither order nor exactly once."""

    lose: float = 0.0
    duplicate: float = 0.0
    subject: str = "*"
    delay_s: float = 0.5
    """The copy of a duplicated event is offered again up to this long after the original."""
    random: random.Random = field(default_factory=random.Random)

    def matches(self, event: SandboxEvent) -> bool:
        return fnmatch.fnmatchcase(event.subject, self.subject)

    def to_json(self) -> JsonDict:
        return {"lose": self.lose, "duplicate": self.duplicate, "subject": self.subject, "delayS": self.delay_s}

    @classmethod
    def parse(cls, body: object) -> DeliveryFaults:
        """From a control request: {"lose", "duplicate": probabilities, "subject": glob, "delayS", "seed"}."""
        if not isinstance(body, dict):
            raise bad_request("faults must be an object.")
        lose, duplicate = _probability(body, "lose"), _probability(body, "duplicate")
        subject = body.get("subject", "*")
        if not isinstance(subject, str) or not subject:
            raise bad_request("subject must be a glob over event subjects, such as thread/19:abc*.")
        delay = body.get("delayS", 0.5)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY_S:
            raise bad_request(f"delayS must be between 0 and {MAX_DELAY_S:g}.")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise bad_request("seed must be an integer.")
        return cls(lose, duplicate, subject, float(delay), random.Random(seed))


def _probability(body: JsonDict, name: str) -> float:
    value = body.get(name, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise bad_request(f"{name} must be a probability between 0 and 1.")
    return float(value)
