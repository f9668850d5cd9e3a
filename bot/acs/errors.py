"""Turns Azure SDK, Graph and HTTP-client exceptions into the bridge's own errors, deciding on the status code."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import httpx
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
)
from kiota_abstractions.api_error import APIError

from bot.errors import (
    AuthError,
    BridgeError,
    NotFoundError,
    NotInCallError,
    PermanentError,
    TransientError,
    body_message,
    from_status,
    parse_retry_after,
)

__all__ = ["azure_errors", "graph_errors", "map_azure_error", "parse_retry_after"]


def _response_message(exc: HttpResponseError) -> str:
    if exc.error is not None and exc.error.message:
        return str(exc.error.message)
    if exc.response is not None:
        try:
            found = body_message(exc.response.text())
        except Exception:  # an unread or undecodable body must not hide the original error
            found = None
        if found:
            return found
    return exc.reason or exc.message or type(exc).__name__


def map_azure_error(exc: AzureError, what: str, *, forbidden: type[PermanentError] = NotInCallError) -> BridgeError:
    """Our error for an azure-core exception raised while doing `what`."""
    if isinstance(exc, IncompleteReadError):
        # The connection broke in the middle of the answer: the request may or may not have taken effect.
        return TransientError(f"{what}: connection lost while reading the answer")
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    if isinstance(exc, ClientAuthenticationError) and status in (None, 400, 401):
        # azure-identity answers a refused sign-in (400 or 401 from the token endpoint) with this type.
        return AuthError(f"{what}: authentication failed: {exc.message}")
    if isinstance(exc, HttpResponseError) and status is not None:
        headers: Mapping[str, str] | None = getattr(exc.response, "headers", None)
        message = f"{what}: {_response_message(exc)} (HTTP {status})"
        return from_status(status, message, retry_after=parse_retry_after(headers), forbidden=forbidden)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(f"{what}: {type(exc).__name__}: {exc.message}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc.message}")


@contextmanager
def azure_errors(what: str, *, forbidden: type[PermanentError] = NotInCallError) -> Iterator[None]:
    """Re-raise azure-core exceptions raised inside the block as ours, naming the operation."""
    try:
        yield
    except AzureError as exc:
        raise map_azure_error(exc, what, forbidden=forbidden) from exc


@contextmanager
def graph_errors(what: str, *, not_found: type[PermanentError] = NotFoundError) -> Iterator[None]:
    """Re-raise Graph (kiota), azure-identity and httpx exceptions raised inside the block as ours."""
    try:
        yield
    except APIError as exc:
        status = exc.response_status_code
        message = f"{what}: {exc.primary_message or type(exc).__name__}"
        if status is None:
            raise PermanentError(message) from exc
        retry_after = parse_retry_after(exc.response_headers)
        message = f"{message} (HTTP {status})"
        raise from_status(status, message, retry_after=retry_after, forbidden=AuthError, not_found=not_found) from exc
    except AzureError as exc:
        raise map_azure_error(exc, what, forbidden=AuthError) from exc
    except httpx.TimeoutException as exc:
        raise TransientError(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise TransientError(f"{what}: connection failed ({type(exc).__name__}: {exc})") from exc
