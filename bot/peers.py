"""Who is on the other end of a connection, as the limits per peer count it: an address, or an IPv6 /64."""

from __future__ import annotations

import ipaddress

UNKNOWN = "unknown"


def peer_key(address: str | None) -> str:
    """The key a per-peer limit counts under. An IPv6 host is given a /64 (and can pick any address in it), so its
    addresses count as one; an IPv4-mapped address counts as the IPv4 one. Behind a reverse proxy every request
    comes from the proxy's address."""
    if not address:
        return UNKNOWN
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # without an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
