"""Two informational findings of the security probe, over the wire: /readyz asked ACS on every unauthenticated
call, and webhook-timestamp values such as "T.99" or "+T" passed when the signature was made over "T"."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from bot.sandbox import SandboxInfo
from tests.hardening.operator_bridge import CODE, Probe, operator_bridge
from tests.support.sandbox import Control

ACS_PROBE = "GET unmatched"
"""How the sandbox counts the bridge's readiness request to the bare ACS endpoint (no route of its own)."""


async def acs_probes(control: Control) -> int:
    stats = await control.ok("GET", "/sandbox/v1/stats")
    return int(stats["requests"].get(ACS_PROBE, 0))


async def test_readyz_asks_acs_at_most_once_every_few_seconds(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with operator_bridge(control, info, tmp_path) as probe:
        before = await acs_probes(control)
        for _ in range(20):
            async with probe.http.get(probe.base + "/readyz") as resp:
                body = await resp.json()
                assert resp.status == 200 and body["checks"]["acs"] is True, body
        # Twenty calls in well under the cache's five seconds: one request, two if the window turned meanwhile.
        assert 1 <= await acs_probes(control) - before <= 2


async def send_at(probe: Probe, timestamp: str, signed_over: int) -> tuple[int, dict[str, Any]]:
    """A join signed over `signed_over` seconds whose webhook-timestamp header reads `timestamp`."""
    payload = json.dumps({"type": "join", "user": {"id": "ann"}, "meeting": CODE})
    msg_id = f"msg_{uuid.uuid4().hex}"
    signature = Webhook(probe.secret).sign(msg_id, datetime.fromtimestamp(signed_over, UTC), payload)
    headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    headers["Content-Type"] = "application/json"
    async with probe.http.post(f"{probe.base}/channels/webhook/app", data=payload, headers=headers) as resp:
        return resp.status, await resp.json()


TIMESTAMP_FORMS = [
    pytest.param("{t}.99", id="fraction"),
    pytest.param("{t}.0", id="zero-fraction"),
    pytest.param("+{t}", id="plus-sign"),
    pytest.param("0{t}", id="leading-zero"),
    pytest.param("{u}", id="underscore"),
    pytest.param("{e}", id="exponent"),
    pytest.param("{w}", id="full-width-digits"),
]


@pytest.mark.parametrize("form", TIMESTAMP_FORMS)
async def test_only_plain_integer_seconds_pass_as_webhook_timestamp(
    control: Control, info: SandboxInfo, tmp_path: Path, form: str
) -> None:
    async with operator_bridge(control, info, tmp_path) as probe:
        now = int(datetime.now(UTC).timestamp())
        text = str(now)
        variants = {
            "t": text,
            "u": f"{text[:4]}_{text[4:]}",
            "e": f"{text[0]}.{text[1:]}e{len(text) - 1}",
            "w": "".join(chr(0xFF10 + int(digit)) for digit in text),  # FULLWIDTH DIGIT ZERO...
        }
        status, body = await send_at(probe, form.format(**variants), now)
        assert status == 401 and body["error"] == "bad_signature", body
        assert "webhook-timestamp" in body["reason"], body
        assert await probe.bridge.store.get_user("webhook:app/ann") is None
        status, body = await send_at(probe, text, now)  # the same signature with the header as signed
        assert status == 202, body
