"""The sandbox: an ACS and Teams stand-in served over TLS on loopback, for the real Azure SDKs.

It imports nothing from the bridge; the bridge imports it only to start it (cli, app).
"""

from .server import Sandbox, SandboxInfo

__all__ = ["Sandbox", "SandboxInfo"]
