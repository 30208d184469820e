"""Who is really asking: the peer address, or the client a trusted proxy forwarded for.

Shared by `security` (IP filtering) and `rate_limit` (buckets per client) so both see the
same address. ``X-Forwarded-For`` is only believed when the TCP peer is a trusted proxy;
then the list is walked from the right (the hop nearest to us) and the first address that is
not itself a trusted proxy is the client. Anything a client writes further left is ignored,
which is what makes a spoofed header harmless.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

from gateway.types import Scope

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")


class ClientAddress(NamedTuple):
    """The resolved client: `text` is a stable key (normalised), `ip` None when unparseable."""

    text: str
    ip: IPAddress | None


UNKNOWN = ClientAddress("", None)


@lru_cache(maxsize=4096)
def parse_address(raw: str) -> ClientAddress:
    """Parse ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80``; IPv4-mapped IPv6 becomes IPv4.

    Cached because the same few peers (proxies, local clients) send nearly every request.
    """
    text = raw.strip()
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return ClientAddress(raw.strip(), None)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ClientAddress(str(ip), ip)


def parse_network(spec: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network from an address or CIDR block; ``::ffff:a.b.c.d/n`` becomes its IPv4 block."""
    net = ipaddress.ip_network(spec.strip(), strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(
            _MAPPED_V4):
        v4 = ipaddress.IPv4Address(int(net.network_address) & 0xFFFFFFFF)
        return ipaddress.ip_network(f"{v4}/{net.prefixlen - 96}", strict=False)
    return net


class NetworkSet:
    """Precompiled address/CIDR list with membership in O(distinct prefix lengths).

    Each network is stored as its masked integer in a set per prefix length, so a list of
    thousands of blocked addresses costs a handful of set look-ups per request, not a scan.
    """

    __slots__ = ("_v4", "_v6", "_specs")

    def __init__(self, specs: Iterable[str]) -> None:
        self._specs = tuple(specs)
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for spec in self._specs:
            net = parse_network(spec)
            table, bits = (v4, 32) if net.version == 4 else (v6, 128)
            table.setdefault(net.prefixlen, set()).add(
                int(net.network_address) >> (bits - net.prefixlen))
        # Longest prefixes first: the most specific entries are the most common (single IPs).
        self._v4 = tuple((32 - p, frozenset(s)) for p, s in sorted(v4.items(), reverse=True))
        self._v6 = tuple((128 - p, frozenset(s)) for p, s in sorted(v6.items(), reverse=True))

    def __contains__(self, ip: object) -> bool:
        if isinstance(ip, ipaddress.IPv4Address):
            table = self._v4
        elif isinstance(ip, ipaddress.IPv6Address):
            table = self._v6
        else:
            return False
        value = int(ip)
        return any((value >> shift) in nets for shift, nets in table)

    def __bool__(self) -> bool:
        return bool(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        shown = ", ".join(self._specs[:4]) + (", ..." if len(self._specs) > 4 else "")
        return f"<NetworkSet {len(self._specs)} [{shown}]>"


class ClientResolver:
    """Resolves the client address of a request, trusting X-Forwarded-For only from proxies."""

    __slots__ = ("trusted",)

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.trusted = NetworkSet(trusted_proxies)

    def resolve(self, scope: Scope) -> ClientAddress:
        client = scope.get("client")
        if not client:
            return UNKNOWN
        peer = parse_address(str(client[0]))
        if not self.trusted or peer.ip is None or peer.ip not in self.trusted:
            return peer
        forwarded = [v for k, v in scope["headers"] if k == b"x-forwarded-for"]
        if not forwarded:
            return peer
        current = peer
        for hop in reversed(b",".join(forwarded).decode("latin-1").split(",")):
            if not hop.strip():
                continue
            current = parse_address(hop)
            if current.ip is None or current.ip not in self.trusted:
                return current
        return current  # every hop is a trusted proxy: the left-most one is the client

    def __repr__(self) -> str:
        return f"<ClientResolver trusted={self.trusted!r}>"
