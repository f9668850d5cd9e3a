"""The doctor's check of each configured meeting: its chat thread is known (from the link or Graph), with hints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..acs.graph import GraphMeetingResolver
from ..config import MeetingConfig
from ..errors import AuthError, BridgeError, MeetingLookupError, TransientError
from ..links import JoinLinkError, parse_join_link
from ..models import MeetingInfo
from .report import Step, failed, passed

ACCESS_POLICY = (
    "give the Graph app OnlineMeetings.Read.All (application, with admin consent) and an application access policy "
    "from a Teams admin: New-CsApplicationAccessPolicy -Identity bridge -AppIds <graph.client_id>, then "
    "Grant-CsApplicationAccessPolicy -PolicyName bridge -Identity <the organizer> (or -Global)"
)


@dataclass(frozen=True)
class Resolved:
    """What the doctor learnt of one meeting, for the join that may follow."""

    config: MeetingConfig
    label: str
    thread_id: str | None
    info: MeetingInfo | None = None
    found: bool = True
    """False when the lookup failed: nobody tries to join it."""

    @property
    def live(self) -> bool | None:
        """Whether it is on now, where Graph said when it is; None when unknown."""
        if self.info is None or self.info.start is None or self.info.end is None:
            return None
        now = datetime.now(UTC)
        return self.info.start <= now <= self.info.end


def label(cfg: MeetingConfig, index: int) -> str:
    name = cfg.name or (f"code {cfg.code}" if cfg.code else f"meetings[{index}]")
    return f"meeting {name}"


def _graph_fix(exc: BridgeError) -> str:
    text = str(exc)
    if isinstance(exc, AuthError) and "(HTTP 403)" in text:
        return ACCESS_POLICY
    if isinstance(exc, AuthError):
        return "check graph.tenant_id, graph.client_id and graph.client_secret (a secret expires)"
    if "channel meeting" in text:
        return "channel meetings have no chat for guests: bridge a meeting scheduled from the calendar"
    if "chat turned off" in text:
        return "turn the meeting chat on in the meeting's options"
    if isinstance(exc, TransientError):
        return "Graph is failing or throttling: try again"
    return (
        "copy the link again from the invitation, and check organizer_id: Graph finds meetings among their organizer's"
    )


async def resolve(cfg: MeetingConfig, index: int, graph: GraphMeetingResolver | None) -> tuple[Step, Resolved]:
    """The meeting's thread, as the bridge would find it; a long link is also looked up in Graph when it can be."""
    name = label(cfg, index)
    try:
        if cfg.graph_meeting_id:
            assert cfg.organizer_id is not None
            if graph is None:
                return _no_graph(cfg, name, "graph_meeting_id needs the [graph] section")
            info = await graph.by_id(cfg.organizer_id, cfg.graph_meeting_id)
            return _found(cfg, name, info, "by its Graph id")
        assert cfg.link is not None
        parsed = parse_join_link(cfg.link)
        organizer = cfg.organizer_id or parsed.organizer_id
        if parsed.thread_id is not None:
            if graph is None or organizer is None:
                detail = f"thread {parsed.thread_id} from the link (not looked up: no [graph] or no organizer)"
                return passed(name, detail), Resolved(cfg, name, parsed.thread_id)
            info = await graph.by_join_url(organizer, cfg.link)
            return _found(cfg, name, info, "from the link, found in Graph")
        if graph is None or organizer is None or parsed.join_meeting_id is None:
            detail = (
                "a short link: its thread is learnt as the first guest joins ([graph] and organizer_id tell it first)"
            )
            return passed(name, detail), Resolved(cfg, name, None)
        info = await graph.by_join_meeting_id(organizer, parsed.join_meeting_id)
        return _found(cfg, name, info, "by its join meeting id in Graph")
    except JoinLinkError as exc:
        step = failed(name, f"the link is refused: {exc}", "bridge a meeting ACS guests can join")
    except MeetingLookupError as exc:
        step = failed(name, f"not found: {exc}", _graph_fix(exc))
    except BridgeError as exc:
        step = failed(name, f"Graph refused the lookup: {exc}", _graph_fix(exc))
    return step, Resolved(cfg, name, None, found=False)


def _no_graph(cfg: MeetingConfig, name: str, why: str) -> tuple[Step, Resolved]:
    fix = "configure [graph] (tenant_id, client_id, client_secret) for an app with OnlineMeetings.Read.All"
    return failed(name, why, fix), Resolved(cfg, name, None, found=False)


def _found(cfg: MeetingConfig, name: str, info: MeetingInfo, how: str) -> tuple[Step, Resolved]:
    subject = f' "{info.subject}"' if info.subject else ""
    return passed(name, f"thread {info.thread_id}{subject} ({how})"), Resolved(cfg, name, info.thread_id, info)
