"""Reading a chat thread's messages through a pipeline of only what a read needs, on the shared HTTP transport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from azure.communication.chat import ChatMessage
from azure.communication.chat._generated.models import ChatMessage as WireMessage
from azure.communication.chat._version import SDK_MONIKER
from azure.communication.chat.aio import CommunicationTokenCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError, map_error
from azure.core.pipeline import AsyncPipeline
from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy, UserAgentPolicy
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import AsyncHttpResponse, HttpRequest

# The service version ChatThreadClient speaks (azure-communication-chat 1.3.0); the page is read with its models.
API_VERSION = "2024-03-07"
ERRORS = {401: ClientAuthenticationError, 404: ResourceNotFoundError}


def start_param(start_time: datetime) -> str:
    """startTime as RFC 3339 in UTC, microseconds kept (the SDK's serializer keeps them too)."""
    return start_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def next_page(next_link: str) -> str:
    """A nextLink, asked in the version this module reads (the SDK's pager does the same)."""
    parts = urlsplit(next_link)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "api-version"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("api-version", API_VERSION)])))


class ThreadReads:
    """list-messages for many identities, each through an azure-core pipeline of two policies over one transport.

    ChatThreadClient.list_messages runs each read through the SDK's full pipeline (request id, headers, proxy,
    content decoding, redirects, retries, authentication, hooks, two logging policies, tracing) and builds the
    request with its generic serializer: on an idle meeting that is most of the read's CPU, and none of it does
    anything for a read here. Retries are ours (the reader's backoff, with SDK retries off everywhere), ACS does not
    redirect, no proxy or tracing is configured, and the bridge logs nothing of azure below WARNING. What a read
    needs is kept: the bearer token (the identity's refreshing credential) and the user agent; the page is read by
    the SDK's own models, errors are the SDK's exceptions, so callers map them as any other SDK call.
    """

    def __init__(self, endpoint: str, transport: AioHttpTransport, **timeouts: float) -> None:
        self._base = endpoint.rstrip("/")
        self._transport = transport
        self._timeouts = timeouts
        self._agent = UserAgentPolicy(sdk_moniker=SDK_MONIKER)
        self._pipelines: dict[str, AsyncPipeline[HttpRequest, AsyncHttpResponse]] = {}

    def pipeline(
        self, identity_id: str, credential: CommunicationTokenCredential
    ) -> AsyncPipeline[HttpRequest, AsyncHttpResponse]:
        found = self._pipelines.get(identity_id)
        if found is None:
            # Built once per identity: the token policy caches the identity's token between reads.
            policies: list[Any] = [self._agent, AsyncBearerTokenCredentialPolicy(credential)]
            found = self._pipelines[identity_id] = AsyncPipeline(self._transport, policies)
        return found

    def forget(self, identity_id: str) -> None:
        # Nothing to close: the transport and its session are shared and owned by the caller.
        self._pipelines.pop(identity_id, None)

    async def messages(
        self,
        identity_id: str,
        credential: CommunicationTokenCredential,
        thread_id: str,
        start_time: datetime | None,
        page_size: int,
    ) -> AsyncIterator[ChatMessage]:
        """The thread's messages from `start_time` on, newest first, page by page (ChatThreadClient.list_messages)."""
        pipeline = self.pipeline(identity_id, credential)
        query = f"maxPageSize={page_size}"
        if start_time is not None:
            query += f"&startTime={quote(start_param(start_time))}"
        url: str | None = (
            f"{self._base}/chat/threads/{quote(thread_id, safe='')}/messages?{query}&api-version={API_VERSION}"
        )
        while url is not None:
            page = await self._page(pipeline, url)
            for item in page.get("value") or ():
                yield ChatMessage._from_generated(WireMessage.deserialize(item))  # type: ignore[no-untyped-call]
            link = page.get("nextLink")
            url = next_page(link) if isinstance(link, str) and link else None

    async def _page(self, pipeline: AsyncPipeline[HttpRequest, AsyncHttpResponse], url: str) -> dict[str, Any]:
        request = HttpRequest("GET", url, headers={"Accept": "application/json"})
        response = (await pipeline.run(request, **self._timeouts)).http_response
        if response.status_code != 200:
            map_error(status_code=response.status_code, response=response, error_map=ERRORS)
            raise HttpResponseError(response=response)
        try:
            # From the bytes: the text would first look for a charset in the content type, which costs more than
            # parsing an empty page (JSON is UTF-8).
            page = json.loads(response.content)
        except ValueError as exc:
            raise HttpResponseError(message="the page of messages is not JSON", response=response) from exc
        if not isinstance(page, dict):
            raise HttpResponseError(message="the page of messages is not a JSON object", response=response)
        return page
