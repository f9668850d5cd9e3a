"""Channels: external transports in both directions (signed webhook now; SMS gateways later)."""
