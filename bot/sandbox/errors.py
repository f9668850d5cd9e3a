"""Errors raised by the sandbox's model and the ACS-shaped bodies they are answered with."""

from __future__ import annotations

import json
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler

ErrorShape = Literal["spec", "communication", "graph", "oauth"]


class SandboxError(Exception):
    """An error the sandbox answers with a status and a body in the shape the real service uses."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        shape: ErrorShape = "spec",
        retry_after: int | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.shape = shape
        self.retry_after = retry_after
        self.target = target

    def body(self) -> dict[str, object]:
        if self.shape == "communication":
            # The live service answers interop 403s this way; the SDK's HttpResponseError.error is then None.
            return {"CommunicationError": {"Code": self.code, "Message": self.message, "Details": []}}
        if self.shape == "oauth":
            return {"error": self.code, "error_description": self.message}
        if self.shape == "graph":
            return {"error": {"code": self.code, "message": self.message, "innerError": {}}}
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        return {"error": error}

    def response(self) -> web.Response:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
        return web.Response(
            status=self.status,
            text=json.dumps(self.body()),
            content_type="application/json",
            headers=headers,
        )


def bad_request(message: str, code: str = "BadRequest") -> SandboxError:
    return SandboxError(400, code, message)


def not_found(message: str) -> SandboxError:
    return SandboxError(404, "NotFound", message)


def unauthorized(message: str) -> SandboxError:
    return SandboxError(401, "Unauthorized", message)


def forbidden(message: str) -> SandboxError:
    return SandboxError(403, "Forbidden", message)


def interop_forbidden() -> SandboxError:
    return SandboxError(
        403,
        "Forbidden",
        "The initiator doesn't have the permission to perform the requested operation.",
        shape="communication",
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn SandboxError into its body, and aiohttp's plain-text 404/405/413 into the spec's JSON shape."""
    try:
        return await handler(request)
    except SandboxError as exc:
        return exc.response()
    except web.HTTPNotFound:
        return not_found(f"No such resource: {request.method} {request.path}").response()
    except web.HTTPMethodNotAllowed:
        return SandboxError(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}").response()
    except web.HTTPRequestEntityTooLarge as exc:
        return SandboxError(413, "RequestEntityTooLarge", exc.text or "The request body is too large.").response()
