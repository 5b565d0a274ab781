"""Which engine URLs a worker may advertise, so a forged registration cannot aim the router at an
arbitrary host (an internal admin service, a metadata endpoint, someone else's API).

    instance document (store `instances`)    rule for the host of `url` and `agent_url`
    provider "aws"                           equal to the document's `private_ip`
    anything else, or no document            an IP literal (or `localhost`) in WORKER_NETWORKS

Host names are never resolved to decide. A name checked against DNS now can point elsewhere when
the router connects later (DNS rebinding), and the control plane's resolver is not the router's:
only an address literal means the same thing to both. Non-canonical address spellings
(`2130706433`, `0x7f.1`, `127.1`) are refused for the same reason: HTTP clients disagree on them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlPolicy:
    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def check(self, urls: Mapping[str, str], instance: Mapping[str, Any] | None) -> str | None:
        """None when every URL (field name -> URL) is acceptable; else why not."""
        for field, url in urls.items():
            problem = self._check_one(url, instance)
            if problem:
                return f"{field} {url!r} refused: {problem}"
        return None

    def _check_one(self, url: str, instance: Mapping[str, Any] | None) -> str | None:
        host = (urlsplit(url).hostname or "").lower()
        if instance is not None and instance.get("provider") == "aws":
            private_ip = instance.get("private_ip")
            if not private_ip:
                return "the instance has no private IP on record yet"
            address = _address(host)
            if address is None or address != _address(str(private_ip)):
                return f"an aws worker must advertise its own private IP {private_ip}"
            return None
        if host == "localhost":
            candidates: list[IPAddress] = [ipaddress.ip_address("127.0.0.1"),
                                           ipaddress.ip_address("::1")]
        else:
            address = _address(host)
            if address is None:
                return ("the host must be an IP address literal (host names are not resolved: "
                        "see docs/control-plane.md)")
            candidates = [address]
        if all(any(a in net for net in self.networks) for a in candidates):
            return None
        listed = ", ".join(str(n) for n in self.networks)
        return f"the address is outside WORKER_NETWORKS ({listed})"


def _address(host: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
