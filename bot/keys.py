"""Typed aiohttp application keys for the bridge's shared objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from .channels.acs_events import AcsEventsDoor
    from .channels.sms.acs import AcsSmsDoor
    from .channels.sms.intake import SmsIntake
    from .channels.sms.twilio import TwilioDoor
    from .channels.webhook import WebhookDoor
    from .config import Settings
    from .drain import Drain
    from .meetings import MeetingRegistry
    from .metrics import Metrics
    from .relay.runtime import Relay
    from .store import Store

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
RELAY: web.AppKey[Relay] = web.AppKey("relay")
REGISTRY: web.AppKey[MeetingRegistry] = web.AppKey("registry")
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("http")
DOOR: web.AppKey[WebhookDoor] = web.AppKey("webhook_door")
EVENTS_DOOR: web.AppKey[AcsEventsDoor] = web.AppKey("acs_events_door")
SMS_INTAKE: web.AppKey[SmsIntake] = web.AppKey("sms_intake")
SMS_DOOR: web.AppKey[AcsSmsDoor] = web.AppKey("acs_sms_door")
TWILIO_DOOR: web.AppKey[TwilioDoor] = web.AppKey("twilio_door")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
ACS_ENDPOINT: web.AppKey[str] = web.AppKey("acs_endpoint")
DRAIN: web.AppKey[Drain] = web.AppKey("drain")
