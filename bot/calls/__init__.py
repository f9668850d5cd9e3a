"""Call connectors: how an ACS identity gets into and out of a Teams meeting call, and how the bridge hears of it."""

from .base import CallConnector
from .client_reported import ClientReportedConnector
from .sandbox import SandboxCallConnector

__all__ = ["CallConnector", "ClientReportedConnector", "SandboxCallConnector"]
