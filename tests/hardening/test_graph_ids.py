"""Graph ids that would rewrite the Graph request's path (finding 6 of the security probe), over the wire.

An organizerId or graphMeetingId of "." or ".." is a path segment that URL normalisation removes, so the bridge
asked Graph for /v1.0/onlineMeetings/x or /v1.0 instead of one organizer's meeting, and Graph's error text came
back to the operator. Ids have a shape: an organizer is an Entra object id (a GUID) or a user principal name, a
meeting id is Graph's own (base64) shape; anything else is refused with 400 before Graph is asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.acs.graph import GraphMeetingResolver
from bot.errors import MeetingLookupError
from bot.sandbox import SandboxInfo
from tests.hardening.operator_bridge import TOKEN, Probe, operator_bridge
from tests.support.sandbox import Control


async def add(probe: Probe, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with probe.http.post(
        probe.base + "/api/v1/meetings", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as resp:
        return resp.status, await resp.json()


def organizer_of(meeting: dict[str, Any]) -> str:
    return str(meeting["organizerId"]).removeprefix("8:orgid:")


PATH_SEGMENTS = [".", "..", "../..", "./x", "x/../..", "%2e%2e", "", " ", "a b", "a?b", "a#b", "a\\b"]


@pytest.mark.parametrize("organizer", PATH_SEGMENTS)
async def test_an_organizer_id_that_is_no_object_id_is_refused_before_graph_is_asked(
    control: Control, info: SandboxInfo, tmp_path: Path, organizer: str
) -> None:
    async with operator_bridge(control, info, tmp_path) as probe:
        other = await control.meeting(subject="Other")
        status, body = await add(probe, {"graphMeetingId": other["id"], "organizerId": organizer})
        assert status == 400, body
        assert body["error"] == "bad_request" and body["field"] == "organizerId", body
        assert "Graph" not in body["reason"] and "Resource" not in body["reason"], body
        assert len(await probe.bridge.store.list_meetings()) == 1


@pytest.mark.parametrize("meeting_id", PATH_SEGMENTS)
async def test_a_meeting_id_of_another_shape_is_refused_before_graph_is_asked(
    control: Control, info: SandboxInfo, tmp_path: Path, meeting_id: str
) -> None:
    async with operator_bridge(control, info, tmp_path) as probe:
        status, body = await add(probe, {"graphMeetingId": meeting_id, "organizerId": organizer_of(probe.meeting)})
        assert status == 400, body
        assert body["error"] == "bad_request" and body["field"] == "graphMeetingId", body
        assert len(await probe.bridge.store.list_meetings()) == 1


async def test_well_formed_ids_still_reach_graph(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async with operator_bridge(control, info, tmp_path) as probe:
        other = await control.meeting(subject="Other")
        # A user principal name is an organizer id too; this one organizes nothing, which Graph says.
        status, body = await add(probe, {"graphMeetingId": other["id"], "organizerId": "megan.bowen@contoso.com"})
        assert status == 422 and body["error"] == "lookup_failed", body
        status, body = await add(probe, {"graphMeetingId": other["id"], "organizerId": other["organizerId"]})
        assert status == 201, body
        assert body["threadId"] == other["threadId"]


@pytest.mark.parametrize(("organizer", "meeting_id"), [("..", "x"), ("x", ".."), (".", "MSp1"), ("a/b", "MSp1")])
async def test_the_resolver_itself_refuses_ids_that_are_path_segments(
    control: Control, info: SandboxInfo, organizer: str, meeting_id: str
) -> None:
    # The configuration and the admin API refuse these first; the client that builds the path refuses them too.
    meeting = await control.meeting()
    async with GraphMeetingResolver(
        info.tenant_id,
        info.client_id,
        info.client_secret,
        authority=info.authority_host,
        base_url=info.graph_base_url,
        ca_file=info.ca_file,
    ) as graph:
        good = await graph.by_id(organizer_of(meeting), meeting["id"])
        assert good.thread_id == meeting["threadId"]
        with pytest.raises(MeetingLookupError, match=r"is not an? "):
            await graph.by_id(organizer if organizer != "x" else organizer_of(meeting), meeting_id)
