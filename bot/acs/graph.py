"""Resolves a Teams meeting (join link, join meeting id or Graph id) to its chat thread through Microsoft Graph."""

from __future__ import annotations

import logging
import re
import ssl
from types import TracebackType
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from azure.identity.aio import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph.generated.models.meeting_chat_mode import MeetingChatMode
from msgraph.generated.models.online_meeting import OnlineMeeting
from msgraph.generated.users.item.online_meetings.online_meetings_request_builder import OnlineMeetingsRequestBuilder
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory

from bot import graph_ids
from bot.errors import MeetingLookupError
from bot.models import MeetingInfo

from .errors import graph_errors

log = logging.getLogger(__name__)

GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

_Query = OnlineMeetingsRequestBuilder.OnlineMeetingsRequestBuilderGetQueryParameters


def _odata_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _lower_escapes(url: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), url)


def _info(meeting: OnlineMeeting, organizer_id: str) -> MeetingInfo:
    name = meeting.id or "(no id)"
    thread_id = meeting.chat_info.thread_id if meeting.chat_info is not None else None
    if not thread_id:
        raise MeetingLookupError(f"meeting {name} has no chat thread (a channel meeting has none)")
    if meeting.allow_meeting_chat == MeetingChatMode.Disabled:
        raise MeetingLookupError(f"meeting {name} has its chat turned off")
    settings = meeting.join_meeting_id_settings
    tenant: object = None
    organizer = meeting.participants.organizer if meeting.participants is not None else None
    if organizer is not None and organizer.identity is not None and organizer.identity.user is not None:
        tenant = organizer.identity.user.additional_data.get("tenantId")
    return MeetingInfo(
        thread_id=thread_id,
        join_web_url=meeting.join_web_url,
        join_meeting_id=settings.join_meeting_id if settings is not None else None,
        passcode=settings.passcode if settings is not None else None,
        subject=meeting.subject,
        start=meeting.start_date_time,
        end=meeting.end_date_time,
        organizer_id=organizer_id,
        # kiota turns GUID-shaped strings among additional data into UUID objects.
        tenant_id=str(tenant) if isinstance(tenant, str | UUID) else None,
    )


class GraphMeetingResolver:
    """Looks meetings up among an organizer's onlineMeetings (application permission OnlineMeetings.Read.All)."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        *,
        authority: str | None = None,
        base_url: str | None = None,
        ca_file: str | None = None,
        scope: str = GRAPH_SCOPE,
    ) -> None:
        """`authority` and `base_url` point sign-in and Graph elsewhere (the sandbox); `ca_file` is trusted for both."""
        options: dict[str, str] = {}
        if authority:
            options["authority"] = authority
        if ca_file:
            options["connection_verify"] = ca_file
        self._credential = ClientSecretCredential(tenant_id, client_id, client_secret, **options)
        base = (base_url or GRAPH_BASE_URL).rstrip("/")
        host = urlsplit(base).hostname
        if not host:
            raise ValueError(f"base_url {base_url!r} has no host")
        # The token is sent only to this host: a redirect elsewhere must not carry it.
        auth = AzureIdentityAuthenticationProvider(self._credential, scopes=[scope], allowed_hosts=[host])
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._http = httpx.AsyncClient(verify=verify)
        adapter = GraphRequestAdapter(auth, client=GraphClientFactory.create_with_default_middleware(client=self._http))
        adapter.base_url = base
        self._graph = GraphServiceClient(request_adapter=adapter)

    @staticmethod
    def _check_organizer(organizer_id: str) -> str:
        if not organizer_id.strip():
            raise MeetingLookupError("no organizer id: Graph finds meetings only through their organizer")
        # A path segment of the request: only an id of its shape, never "." or ".." (see bot.graph_ids).
        try:
            return graph_ids.organizer_id(organizer_id)
        except graph_ids.GraphIdError as exc:
            raise MeetingLookupError(f"organizer id {organizer_id!r} is not an object id: {exc}") from exc

    async def _first(self, organizer_id: str, odata_filter: str, what: str) -> OnlineMeeting | None:
        config = RequestConfiguration(query_parameters=_Query(filter=odata_filter))
        meetings = self._graph.users.by_user_id(organizer_id).online_meetings
        with graph_errors(f"look up {what}", not_found=MeetingLookupError):
            result = await meetings.get(request_configuration=config)
        found = list(result.value or []) if result is not None else []
        if len(found) > 1:
            log.warning("Graph found %d meetings for %s; using the first", len(found), what)
        return found[0] if found else None

    async def by_join_url(self, organizer_id: str, url: str) -> MeetingInfo:
        """The meeting whose joinWebUrl is `url` (Graph compares the link exactly)."""
        organizer = self._check_organizer(organizer_id)
        # Teams writes %-escapes in lower case; a link re-encoded on its way here may carry them in upper case.
        for candidate in dict.fromkeys((url.strip(), _lower_escapes(url.strip()))):
            meeting = await self._first(organizer, f"JoinWebUrl eq {_odata_literal(candidate)}", "a meeting by link")
            if meeting is not None:
                return _info(meeting, organizer)
        raise MeetingLookupError("no meeting of this organizer has that join link")

    async def by_join_meeting_id(self, organizer_id: str, join_meeting_id: str) -> MeetingInfo:
        """The meeting whose joinMeetingIdSettings.joinMeetingId is `join_meeting_id` (spaces ignored)."""
        organizer = self._check_organizer(organizer_id)
        digits = "".join(join_meeting_id.split())
        if not digits.isdigit():
            raise MeetingLookupError(f"join meeting id {join_meeting_id!r} is not a number")
        odata_filter = f"joinMeetingIdSettings/joinMeetingId eq {_odata_literal(digits)}"
        meeting = await self._first(organizer, odata_filter, "a meeting by join meeting id")
        if meeting is None:
            raise MeetingLookupError(f"no meeting of this organizer has join meeting id {digits}")
        return _info(meeting, organizer)

    async def by_id(self, organizer_id: str, meeting_id: str) -> MeetingInfo:
        """The meeting with Graph onlineMeeting id `meeting_id`."""
        organizer = self._check_organizer(organizer_id)
        if not meeting_id.strip():
            raise MeetingLookupError("no meeting id given")
        try:
            checked = graph_ids.meeting_id(meeting_id)
        except graph_ids.GraphIdError as exc:
            raise MeetingLookupError(f"meeting id {meeting_id!r} is not a Graph id: {exc}") from exc
        # The SDK percent-encodes each segment's reserved characters ("/" as %2F); the check keeps out dot segments.
        item = self._graph.users.by_user_id(organizer).online_meetings.by_online_meeting_id(checked)
        with graph_errors("look up a meeting by id", not_found=MeetingLookupError):
            meeting = await item.get()
        if meeting is None:
            raise MeetingLookupError(f"no meeting {meeting_id} for this organizer")
        return _info(meeting, organizer)

    async def close(self) -> None:
        await self._http.aclose()
        await self._credential.close()

    async def __aenter__(self) -> GraphMeetingResolver:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
