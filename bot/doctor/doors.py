"""The doctor's checks of what reaches the bridge from outside: Event Grid doors and their secrets, SMS."""

from __future__ import annotations

import base64

import aiohttp

from ..acs.sms import AcsSmsGateway
from ..channels.chat_events import PATH as CHAT_EVENTS_PATH
from ..channels.sms.acs import PATH as SMS_EVENTS_PATH
from ..config import Settings
from ..errors import AuthError, BridgeError
from ..phones import InvalidNumber, normalize
from .report import Step, failed, passed, skipped
from .resource import TIMEOUT_S, tls

EVENTS = "Event Grid doors"
SMS = "SMS"


def event_grid(settings: Settings) -> Step:
    """The doors Event Grid posts to have their secrets, and the public URL its subscriptions name is set."""
    if settings.use_sandbox:
        return passed(EVENTS, "the embedded sandbox posts its events to the bridge itself")
    public = settings.bridge.public_url
    wanted: list[tuple[str, str]] = []
    if settings.sms.gateway == "acs":
        if settings.sms.events_secret is None:
            fix = "set sms.events_secret and subscribe SMS Received and SMS Delivery Report to the door with it"
            return failed(
                EVENTS, "sms.gateway is acs, but sms.events_secret is not set: no text reaches the bridge", fix
            )
        wanted.append(("SMS received and delivery reports", f"{SMS_EVENTS_PATH}?code=<sms.events_secret>"))
    if settings.events.secret is not None:
        wanted.append(("chat message events", f"{CHAT_EVENTS_PATH}?code=<events.secret>"))
    if not wanted:
        return passed(EVENTS, "none configured: chat is read by polling, and no SMS gateway takes events")
    if public is None or not public.startswith("https://"):
        return failed(
            EVENTS,
            f"bridge.public_url is {public or 'not set'}: Event Grid delivers only to a public https URL",
            "set bridge.public_url to the https address the bridge is reached at (through its reverse proxy)",
        )
    base = public.rstrip("/")
    return passed(EVENTS, "subscribe " + "; ".join(f"{what} to {base}{path}" for what, path in wanted))


async def sms(settings: Settings, http: aiohttp.ClientSession, gateway: AcsSmsGateway | None) -> Step:
    """The bridge's number is E.164 and the gateway accepts the bridge's credentials (and the number)."""
    sms = settings.sms
    if sms.gateway == "none":
        return skipped(SMS, "no SMS gateway (sms.gateway none)")
    problem = _e164_problem(sms.number)
    if problem is not None:
        return failed(SMS, f"sms.number {sms.number or '(not set)'} {problem}", "write it as +<country><number>")
    if sms.gateway == "twilio":
        return await _twilio(settings, http)
    assert gateway is not None
    try:
        refused = await gateway.probe()
    except AuthError as exc:
        return failed(SMS, f"ACS refused the sign-in: {exc}", "see the credential step above")
    except BridgeError as exc:
        return failed(SMS, f"the check failed: {exc}", "try again")
    if refused is not None:
        fix = "get a number for the resource (Phone numbers in the portal) and set it as sms.number"
        return failed(SMS, f"ACS does not take {sms.number} as the sender: {refused}", fix)
    return passed(SMS, f"ACS takes {sms.number} as the sender")


def _e164_problem(number: str | None) -> str | None:
    if number is None:
        return "is needed"
    try:
        shaped = normalize(number, strict=False)
    except InvalidNumber as exc:
        return f"is not a phone number: {exc.reason}"
    return None if shaped == number else f"is not in E.164 (that is {shaped})"


async def _twilio(settings: Settings, http: aiohttp.ClientSession) -> Step:
    tw, number = settings.twilio, settings.sms.number
    if not (tw.account_sid and tw.auth_token):
        return failed(SMS, "twilio.account_sid or twilio.auth_token is not set", "copy both from the Twilio console")
    url = f"{tw.base_url.rstrip('/')}/2010-04-01/Accounts/{tw.account_sid}/IncomingPhoneNumbers.json"
    # Built by hand, as the gateway does: aiohttp's BasicAuth is deprecated, its replacement missing in older ones.
    basic = base64.b64encode(f"{tw.account_sid}:{tw.auth_token.get_secret_value()}".encode()).decode("ascii")
    try:
        async with http.get(
            url,
            params={"PhoneNumber": number or ""},
            headers={"Authorization": f"Basic {basic}"},
            ssl=tls(tw.ca_file),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        ) as resp:
            status = resp.status
            body = await resp.json(content_type=None) if status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return failed(SMS, f"Twilio at {tw.base_url} does not answer ({type(exc).__name__})", "check twilio.base_url")
    if status in (401, 403, 404):
        return failed(SMS, f"Twilio refused the account (HTTP {status})", "check twilio.account_sid and auth_token")
    if status != 200 or not isinstance(body, dict):
        return failed(SMS, f"Twilio answered HTTP {status}", "try again")
    if not body.get("incoming_phone_numbers"):
        return failed(SMS, f"{number} is not a number of this Twilio account", "set sms.number to one of its numbers")
    return passed(SMS, f"Twilio accepts the account, and {number} is its number")
