"""The sandbox's long-lived secrets (access key, signing key, Entra app, managed identity) in its state folder."""

from __future__ import annotations

import base64
import json
import os
import secrets
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

SECRETS_FILE = "secrets.json"


@dataclass(frozen=True)
class SandboxCredentials:
    access_key: str
    """Base64 resource access key: signs identity and SMS requests (HMAC-SHA256)."""
    signing_key: str
    """Base64 key that signs the JWTs the sandbox issues (ACS user tokens, Graph tokens)."""
    resource_id: str
    tenant_id: str
    client_id: str
    client_secret: str
    managed_identity_id: str
    """The client id of the host's managed identity (the one the IDENTITY_ENDPOINT hands out tokens for)."""
    managed_identity_header: str
    """The IDENTITY_HEADER secret a caller of the managed identity endpoint must send as X-IDENTITY-HEADER."""

    @property
    def access_key_bytes(self) -> bytes:
        return base64.b64decode(self.access_key)

    @property
    def signing_key_bytes(self) -> bytes:
        return base64.b64decode(self.signing_key)

    @classmethod
    def generate(cls) -> SandboxCredentials:
        return cls(
            access_key=base64.b64encode(secrets.token_bytes(64)).decode("ascii"),
            signing_key=base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
            resource_id=str(uuid.uuid4()),
            tenant_id=str(uuid.uuid4()),
            client_id=str(uuid.uuid4()),
            client_secret=secrets.token_urlsafe(30),
            managed_identity_id=str(uuid.uuid4()),
            managed_identity_header=secrets.token_urlsafe(24),
        )

    @classmethod
    def load_or_create(cls, state_dir: Path) -> SandboxCredentials:
        """Keep the same keys across restarts so tokens and connection strings stay valid."""
        path = state_dir / SECRETS_FILE
        fresh = cls.generate()
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            known = {k: str(data[k]) for k in asdict(fresh) if k in data}
            if len(known) == len(asdict(fresh)):
                return cls(**known)
            # Written by an older sandbox: keep what it had, so its keys and tokens stay valid, and add the rest.
            fresh = cls(**(asdict(fresh) | known))
        creds = fresh
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(creds), fh, indent=2)
        return creds
