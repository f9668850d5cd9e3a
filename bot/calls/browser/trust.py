"""What the browser trusts beyond its defaults: the one certificate of a server with a local CA (the sandbox)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ...errors import TransientError

CONNECT_TIMEOUT_S = 10.0


def spki_hash(der_cert: bytes) -> str:
    """The base64 SHA-256 of a certificate's public key, the form --ignore-certificate-errors-spki-list takes."""
    key = x509.load_der_x509_certificate(der_cert).public_key()
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


async def pin_for(url: str, ca_file: str) -> str:
    """The SPKI pin of the certificate the server at `url` presents, once Python has verified it against ca_file.

    Chromium is then told to accept that one key despite its unknown issuer, and nothing else: unlike
    ignore_https_errors (every certificate of every host), a pin trusts only the server already checked here.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 443
    context = ssl.create_default_context(cafile=ca_file)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        raise TransientError(f"cannot check the certificate of {host}:{port}: {exc}") from exc
    try:
        peer = writer.get_extra_info("ssl_object")
        der = peer.getpeercert(binary_form=True) if peer is not None else None
    finally:
        writer.close()
    if not der:
        raise TransientError(f"{host}:{port} presented no certificate")
    return spki_hash(der)
