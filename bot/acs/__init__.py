"""The bridge's own small clients around Azure and Graph: the only code that imports azure.*, msgraph or kiota."""

from .chat import ChatService
from .graph import GraphMeetingResolver
from .identity import IdentityService

__all__ = ["ChatService", "GraphMeetingResolver", "IdentityService"]
