"""Quiet hours for the texts the bridge starts on its own: held through the number's night, sent in its morning.

A text is the bridge's own when the number is in no conversation: it is in no meeting (nor on its way into one)
and has not texted within `sms.conversation_s`. Notices that a meeting ended or that inactivity took the number out
are such texts; replies to what it texted, and the meeting's messages while it is in the meeting, are not. A held
text that would be older than `sms.quiet_stale_h` by morning is dropped instead, with that reason.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from ...config import SmsSection
from ...errors import BridgeError, PermanentError, ThrottledError
from ...models import Delivery, ExternalUser
from ...phones import mask
from ...quiet_hours import quiet_until, zones_for
from ...store import Store, utcnow
from ...store.consent import QUIET_HOLD

log = logging.getLogger(__name__)


class QuietHoursHold(ThrottledError):
    """Not a throttle, but like one: nothing was sent and nothing failed, so it is no try; the deliveries wait for
    retry_after (the number's morning), or until the number texts again."""


def stale(oldest: datetime, at: datetime, limit_h: float) -> bool:
    return at - oldest > timedelta(hours=limit_h)


class QuietHours:
    def __init__(self, store: Store, settings: SmsSection) -> None:
        self._store = store
        self._settings = settings

    async def check(self, user: ExternalUser, deliveries: list[Delivery]) -> BridgeError | None:
        """QuietHoursHold to wait, PermanentError to drop as stale, None to send now."""
        settings = self._settings
        window = settings.quiet_window
        if window is None or not deliveries or all(d.body.get("always") for d in deliveries):
            return None  # the STOP confirmation goes at once, whatever conversation_s says
        now = utcnow()
        number = user.id.removeprefix("sms:")
        until = quiet_until(now, window, zones_for(number, settings.quiet_hours_zone))
        held = any((d.last_error or "").startswith(QUIET_HOLD) for d in deliveries)
        if until is None and not held:
            return None  # daytime: nothing to look up
        last_text, in_meeting = await self._store.sms_conversation(user.id)
        if in_meeting or (last_text is not None and (now - last_text).total_seconds() <= settings.conversation_s):
            return None
        oldest = min(d.created_at or now for d in deliveries)
        if stale(oldest, until or now, settings.quiet_stale_h):
            log.info("a text to %s was dropped: it would be stale after quiet hours", mask(number))
            return PermanentError(f"stale: {QUIET_HOLD} past {settings.quiet_stale_h:g} h")
        if until is None:
            return None
        log.info("a text to %s is held for quiet hours until %s UTC", mask(number), f"{until:%H:%M}")
        return QuietHoursHold(
            f"{QUIET_HOLD} until {until.isoformat(timespec='seconds')}", (until - now).total_seconds()
        )
