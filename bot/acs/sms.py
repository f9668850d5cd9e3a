"""ACS SMS sends through azure-communication-sms, one recipient per call, deduplicated by our own repeatability id."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType

import aiohttp
from azure.communication.sms._generated.models import (
    SendMessageRequest,
    SmsRecipient,
    SmsSendOptions,
    SmsSendResponse,
    SmsSendResponseItem,
)
from azure.communication.sms.aio import SmsClient
from azure.core.pipeline.transport import AioHttpTransport

from bot.errors import AuthError, BridgeError, PermanentError, TransientError, from_status

from ..phones import mask
from .auth import AcsAuth
from .errors import azure_errors

log = logging.getLogger(__name__)

# Keys that are not UUIDs are mapped into one with uuid5, stably, so every retry of a text carries the same id.
KEY_NAMESPACE = uuid.UUID("6f1d3f0e-5a57-4b0e-9d0c-2f4f3c6b7a10")


def repeatability_id(key: str) -> str:
    """The UUID string ACS wants as repeatabilityRequestId: the key itself when it is one."""
    try:
        return str(uuid.UUID(key))
    except ValueError:
        return str(uuid.uuid5(KEY_NAMESPACE, key))


def rfc1123(when: datetime) -> str:
    """repeatabilityFirstSent: an IMF-fixdate in GMT, whole seconds (a naive time is taken as UTC)."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return format_datetime(aware.astimezone(UTC).replace(microsecond=0), usegmt=True)


def result_of(item: SmsSendResponseItem) -> str:
    """The message id of one recipient's result, or the error it stands for."""
    status = int(item.http_status_code)
    if item.successful:
        if not item.message_id:
            raise PermanentError(f"send SMS: accepted without a message id (HTTP {status})")
        return str(item.message_id)
    reason = f"send SMS: {item.error_message or 'refused'} (HTTP {status})"
    # Opted out (403), invalid number (400), outside the 5-minute repeatability window (412): retrying won't help.
    raise from_status(status, reason, forbidden=PermanentError)


class AcsSmsGateway:
    """Sends texts from the bridge's ACS number; SDK retries are off, the outbox retries with the same key."""

    name = "acs"

    def __init__(
        self,
        auth: AcsAuth | str,
        number: str,
        *,
        connection_verify: str | bool = True,
        session: aiohttp.ClientSession | None = None,
        connection_timeout: float = 10.0,
        read_timeout: float = 30.0,
    ) -> None:
        """`auth` is how to sign in (a connection string reads as its access key); `session`, when given, is used and
        left open, otherwise the SDK opens its own. The caller owns `auth`'s credential."""
        self.number = number
        self._timeouts = {"connection_timeout": connection_timeout, "read_timeout": read_timeout}
        options: dict[str, object] = {"connection_verify": connection_verify, "retry_total": 0}
        if session is not None:
            options["transport"] = AioHttpTransport(session=session, session_owner=False)
        if isinstance(auth, str):
            auth = AcsAuth.from_connection_string(auth)
        self._client = SmsClient(auth.sdk_endpoint, auth.signer, **options)

    async def send(self, to: str, text: str, *, key: str, first_sent: datetime) -> str:
        """Text one number; returns the ACS message id. A repeat with the same key and first_sent is not resent."""
        if not text:
            raise PermanentError("send SMS: the message is empty")
        request = SendMessageRequest(
            from_property=self.number,
            sms_recipients=[
                SmsRecipient(
                    to=to,
                    repeatability_request_id=repeatability_id(key),
                    repeatability_first_sent=rfc1123(first_sent),
                )
            ],
            message=text,
            sms_send_options=SmsSendOptions(enable_delivery_report=True, tag=key),
        )
        try:
            with azure_errors("send SMS", forbidden=AuthError):
                # The generated operation, not SmsClient.send(): the public send() makes a new repeatability id on
                # every call, so our retry after a lost answer would text the phone twice.
                response: SmsSendResponse = await self._client._sms_service_client.sms.send(request, **self._timeouts)
        except BridgeError as exc:
            log.info("SMS to %s not sent: %s", mask(to), exc)
            raise
        items = [item for item in response.value or [] if item.to == to] or list(response.value or [])
        if len(items) != 1:
            # Safe to retry: the same repeatability id makes ACS answer a repeat with the first result.
            raise TransientError(f"send SMS: the answer held {len(items)} results for one recipient")
        try:
            message_id = result_of(items[0])
        except BridgeError as exc:
            log.info("SMS to %s refused: %s", mask(to), exc)
            raise
        log.debug("SMS to %s accepted as %s (%s)", mask(to), message_id, items[0].repeatability_result)
        return message_id

    async def probe(self) -> str | None:
        """Whether the resource takes our sign-in and our number, texting nobody: a send to no recipients, which the
        service refuses (400) only once it has authenticated it. None when both are taken, else what it said of the
        number; AuthError when the sign-in is refused."""
        request = SendMessageRequest(from_property=self.number, sms_recipients=[], message="check")
        try:
            with azure_errors("check SMS", forbidden=AuthError):
                await self._client._sms_service_client.sms.send(request, **self._timeouts)
        except AuthError:
            raise
        except PermanentError as exc:
            # Its complaint is about the empty send unless it names our number or its sender.
            text = str(exc)
            return text if self.number in text or "from " in text.lower() else None
        return None

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AcsSmsGateway:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
