"""Small command-line tools for trying a bridge: a signed webhook client, its inbox, a simulated phone."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

EXIT_CONFIG = 2


async def webhook_send(args: argparse.Namespace) -> int:
    from .channels.webhook import sign
    from .demo import read_demo

    demo = read_demo(args.state_dir) or {}
    secret = args.secret or demo.get("secret") if args.client == "demo" else args.secret
    secret = secret or os.environ.get("BRIDGE_WEBHOOK_SECRET")
    url = args.url.rstrip("/") + f"/channels/webhook/{args.client}" if args.url else demo.get("webhookUrl")
    if not secret or not url:
        print("error: give --url and --secret (or start the demo with `python -m bot run`)", file=sys.stderr)
        return EXIT_CONFIG
    event: dict[str, Any] = {"type": args.type, "user": {"id": args.user}, "meeting": args.meeting}
    if args.name:
        event["user"]["displayName"] = args.name
    if args.type == "message":
        event["text"] = args.text
    payload = json.dumps(event)
    headers = sign(secret, f"msg_{uuid.uuid4().hex}", payload)
    try:
        async with aiohttp.ClientSession() as http, http.post(url, data=payload, headers=headers) as resp:
            body = await resp.text()
    except aiohttp.ClientError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{resp.status} {body}")
    return 0 if resp.status < 300 else 1


async def webhook_inbox(state_dir: Path) -> int:
    from .demo import read_demo

    demo = read_demo(state_dir)
    if demo is None:
        print("error: no demo found; start it with `python -m bot run`", file=sys.stderr)
        return 1
    url = demo["webhookUrl"].split("/channels/")[0] + "/demo/callbacks"
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, headers={"Authorization": f"Bearer {demo['secret']}"}) as resp,
        ):
            items = await resp.json()
    except aiohttp.ClientError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    for item in items:
        sender = item.get("from", {}).get("displayName", "")
        stamp = str(item.get("sentAt", ""))[11:19]
        who = item.get("user", {}).get("id")
        print(f"[{item.get('type')}] to {who} from {sender or '-'}: {item.get('text')}  ({stamp})")
    if not items:
        print("(nothing yet)")
    return 0


async def phone(args: argparse.Namespace) -> int:
    path = args.sandbox_dir / "sandbox.json"
    if not path.exists():
        print(f"error: no sandbox at {args.sandbox_dir}; start one with `python -m bot run`", file=sys.stderr)
        return 1
    info = json.loads(path.read_text())
    number = quote(args.number, safe="")
    url = f"{info['controlUrl']}/phones/{number}/sms"
    ctx = ssl.create_default_context(cafile=info["caFile"])
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            if args.text is not None:
                body = {"to": args.to or info["smsNumber"], "message": args.text}
                async with http.post(url, json=body) as resp:
                    answer = await resp.json()
                    if resp.status >= 300:
                        print(f"error: {answer}", file=sys.stderr)
                        return 1
                print(f"sent from {args.number} to {body['to']}")
                return 0
            async with http.get(url) as resp:
                inbox = await resp.json()
    except aiohttp.ClientError as exc:
        print(f"error: cannot reach the sandbox: {exc}", file=sys.stderr)
        return 1
    for item in inbox.get("value", []):
        print(f"[{str(item.get('receivedTimestamp', ''))[11:19]}] {item.get('from')}: {item.get('message')}")
    if not inbox.get("value"):
        print("(nothing yet)")
    return 0
