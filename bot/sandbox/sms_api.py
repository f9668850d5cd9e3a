"""The ACS SMS API (2021-03-07; HMAC or Entra ID) and the simulated phones that text the sandbox number."""

from __future__ import annotations

from aiohttp import web

from . import bus
from .errors import bad_request
from .keys import RESET_HOOKS, WORLD
from .limits import check_limit
from .phones import Phones, Sms, check_message, is_e164
from .resource_auth import verify_caller
from .util import JsonDict, iso
from .web_util import json_body, json_response, require_api_version

routes = web.RouteTableDef()
PHONES: web.AppKey[Phones] = web.AppKey("phones", Phones)
API_VERSIONS = ("2021-03-07",)
MAX_RECIPIENTS = 100


def _subject(number: str) -> str:
    return f"/phonenumber/{number.lstrip('+')}"


def _delivery_report(sms: Sms) -> JsonDict:
    data: JsonDict = {
        "messageId": sms.message_id,
        "from": sms.sender,
        "to": sms.recipient,
        "deliveryStatus": "Delivered",
        "deliveryStatusDetails": "No error.",
        "receivedTimestamp": iso(sms.received),
        "deliveryAttempts": [
            {"timestamp": iso(sms.received), "segmentsSucceeded": sms.segment_count, "segmentsFailed": 0}
        ],
    }
    if sms.tag is not None:
        data["tag"] = sms.tag
    return data


def _send_options(body: JsonDict) -> tuple[bool, str | None]:
    options = body.get("smsSendOptions")
    if options is None:
        return False, None
    if not isinstance(options, dict):
        raise bad_request("smsSendOptions must be an object.")
    report = options.get("enableDeliveryReport", False)
    tag = options.get("tag")
    if not isinstance(report, bool):
        raise bad_request("smsSendOptions.enableDeliveryReport must be true or false.")
    if tag is not None and not isinstance(tag, str):
        raise bad_request("smsSendOptions.tag must be a string.")
    return report, tag


@routes.post("/sms")
async def send_sms(request: web.Request) -> web.Response:
    require_api_version(request, *API_VERSIONS)
    world = request.app[WORLD]
    verify_caller(request, await request.read())
    body = await json_body(request)
    phones = request.app[PHONES]
    sender = phones.check_sender(body.get("from"))
    recipients = body.get("smsRecipients")
    if not isinstance(recipients, list) or not recipients:
        raise bad_request("smsRecipients must be a non-empty list.")
    if len(recipients) > MAX_RECIPIENTS:
        raise bad_request(f"At most {MAX_RECIPIENTS} recipients per request, got {len(recipients)}.")
    message = body.get("message")
    segments = check_message(message)
    assert isinstance(message, str)
    report, tag = _send_options(body)
    # Counted before anything is sent, so a throttled request delivers to nobody.
    for _ in recipients:
        check_limit(request, "sms.send", None, sender)
    results: list[JsonDict] = []
    for recipient in recipients:
        outcome = phones.send(sender, recipient, message, segments, tag)
        results.append(outcome.result)
        if outcome.delivered is not None and report:
            world.events.publish(
                bus.SMS_DELIVERY_REPORT, _subject(outcome.delivered.recipient), _delivery_report(outcome.delivered)
            )
    return json_response({"value": results}, status=202)


def _phone(request: web.Request) -> str:
    # aiohttp has already percent-decoded the path, so %2B15551234567 arrives as +15551234567.
    number = request.match_info["number"].strip()
    if not is_e164(number):
        raise bad_request(f"{number} is not a phone number in E.164 format (+ and 7-15 digits).")
    return number


@routes.post("/sandbox/v1/phones/{number}/sms")
async def phone_texts(request: web.Request) -> web.Response:
    """A simulated phone texts a sandbox number: for the ACS number SMSReceived is published, as ACS would; texts
    to another gateway's number (Twilio's) went to that gateway inside text_in."""
    phone = _phone(request)
    body = await json_body(request)
    phones = request.app[PHONES]
    sms = phones.text_in(phone, body.get("to"), body.get("message"))
    if sms.recipient == phones.sms_number:
        data = {k: v for k, v in sms.to_json().items() if k != "tag"}
        request.app[WORLD].events.publish(bus.SMS_RECEIVED, _subject(phone), data)
    return json_response({"messageId": sms.message_id}, status=202)


@routes.get("/sandbox/v1/phones/{number}/sms")
async def phone_inbox(request: web.Request) -> web.Response:
    """What a simulated phone received from the sandbox number, oldest first."""
    phone = _phone(request)
    phones = request.app[PHONES]
    return json_response(
        {
            "number": phone,
            "optedOut": phone in phones.opted_out,
            "value": [sms.to_json() for sms in phones.inbox(phone)],
        }
    )


def setup(app: web.Application) -> None:
    """Give the app its phones and forget them on reset."""
    phones = Phones(app[WORLD].sms_number)
    app[PHONES] = phones
    app[RESET_HOOKS].append(phones.reset)
