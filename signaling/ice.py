"""ICE host addresses for the node.

aioice gathers host candidates from every interface except loopback, and has no setting for it.
A node behind a known address, and every test here (which runs with only 127.0.0.1), needs to say
which addresses to offer: `TC_ICE_HOST_ADDRESSES`. The setting is process-wide, as the node is.
"""

from __future__ import annotations

from aioice import ice

_original = ice.get_host_addresses


def use_host_addresses(addresses: list[str]) -> None:
    """Offer exactly these host addresses (an empty list restores aioice's own choice)."""
    if not addresses:
        ice.get_host_addresses = _original
        return
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    ice.get_host_addresses = get_host_addresses
