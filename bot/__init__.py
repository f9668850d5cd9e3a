"""The meeting bridge: external users (SMS, signed webhooks) in a Teams meeting's chat through ACS."""

__version__ = "0.1.0"
