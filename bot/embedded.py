"""Running on the embedded sandbox: settings pointed at it, its Event Grid, Graph and Twilio wired to the bridge."""

from __future__ import annotations

import logging
import secrets
import ssl
from typing import Any

import aiohttp
from pydantic import SecretStr

from .config import Settings
from .sandbox import SandboxInfo


def on_sandbox(settings: Settings, info: SandboxInfo) -> Settings:
    """The settings pointed at an embedded sandbox: its ACS resource, its CA and its Graph."""
    acs = settings.acs.model_copy(
        update={"connection_string": SecretStr(info.connection_string), "ca_file": info.ca_file}
    )
    graph = settings.graph.model_copy(
        update={
            "tenant_id": info.tenant_id,
            "client_id": info.client_id,
            "client_secret": SecretStr(info.client_secret),
            "authority": info.authority_host,
            "base_url": info.graph_base_url,
            "ca_file": info.ca_file,
        }
    )
    calls = settings.calls.model_copy(update={"sandbox_endpoint": info.endpoint})
    sms = settings.sms
    if sms.gateway == "none":
        sms = sms.model_copy(update={"gateway": "acs", "number": info.sms_number})
    if sms.gateway == "acs" and sms.number is None:
        sms = sms.model_copy(update={"number": info.sms_number})
    if sms.gateway == "acs" and sms.events_secret is None:
        sms = sms.model_copy(update={"events_secret": SecretStr(secrets.token_urlsafe(24))})
    return settings.model_copy(update={"acs": acs, "graph": graph, "calls": calls, "sms": sms})


async def _sandbox_control(info: SandboxInfo, method: str, path: str, body: Any = None) -> Any:
    ctx = ssl.create_default_context(cafile=info.ca_file)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http,
        http.request(method, f"{info.control_url}{path}", json=body) as resp,
    ):
        resp.raise_for_status()
        return await resp.json() if resp.content_type == "application/json" else None


async def twilio_on_sandbox(settings: Settings, info: SandboxInfo) -> Settings:
    """The Twilio settings of the sandbox's own Twilio stand-in, when the SMS gateway is twilio."""
    if settings.sms.gateway != "twilio":
        return settings
    account = await _sandbox_control(info, "GET", "/twilio")
    twilio = settings.twilio.model_copy(
        update={
            "account_sid": account["accountSid"],
            "auth_token": SecretStr(account["authToken"]),
            "base_url": account["baseUrl"],
            "ca_file": info.ca_file,
        }
    )
    sms = settings.sms.model_copy(update={"number": account["number"]})
    return settings.model_copy(update={"twilio": twilio, "sms": sms})


async def point_sandbox_twilio(info: SandboxInfo, inbound_url: str) -> None:
    """Like setting a Twilio number's messaging webhook: texts to it are posted to the bridge."""
    await _sandbox_control(info, "PUT", "/twilio", {"smsUrl": inbound_url})


SMS_EVENT_TYPES = ("Microsoft.Communication.SMSReceived", "Microsoft.Communication.SMSDeliveryReportReceived")


async def subscribe_sandbox_events(info: SandboxInfo, door: str, secret: str, event_types: tuple[str, ...]) -> None:
    """Have the sandbox push events to one of the bridge's doors, as an Event Grid subscription on ACS would."""
    body = {"endpoint": f"{door}?code={secret}", "eventTypes": list(event_types), "schema": "EventGrid"}
    ctx = ssl.create_default_context(cafile=info.ca_file)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http,
        http.post(f"{info.control_url}/event-subscriptions", json=body) as resp,
    ):
        if resp.status != 201:
            logging.getLogger(__name__).warning("sandbox event subscription failed: %s", await resp.text())
