"""Where the cell may send a tenant's webhooks: public internet addresses only (SSRF guard).

A tenant admin chooses the webhook URL, and the cell POSTs to it from inside the deployment. Without
this guard a URL could aim the cell at its own database, NATS monitoring, the cloud metadata service
(169.254.169.254) or any private network, and the delivery log would tell the tenant which ports
answer. Two checks, both needed:

- `check_webhook_url` (no network): at creation and update, and again before each send. https only,
  no user:password@ (credentials would be stored and shown to every reader of the endpoint), and no
  host that is plainly internal (an IP literal that is not public, localhost, a single-label name
  like a compose service, .internal/.local names).
- `resolve_public` (DNS): right before each send, since a public name can resolve to a private
  address, or be re-pointed after it was checked. Every address the name resolves to must be public;
  the sender should then connect to one of the returned addresses (not resolve again), so a DNS
  answer that changes between check and connect (rebinding) cannot slip through.

`allow_private=True` is for the embedded dev stack and tests, whose receivers listen on loopback
over plain http.

The same rules guard the worker's outbound tools (cells.tools.http: the `http` tool kind and the vendor
tools), so the module sits in the contract, which both planes may import.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "PinnedTarget", "UnsafeWebhookTarget", "check_webhook_url", "is_public_address", "pin_to_address",
    "resolve_public", "url_origin",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeWebhookTarget(ValueError):
    """The URL or address is not an allowed webhook target; the message is safe to show the tenant."""


# Ranges Python's is_global does not exclude (or not on every version), refused explicitly.
_BLOCKED_NETWORKS: Final = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8",        # "this network"; 0.0.0.0 reaches the local host on Linux
    "100.64.0.0/10",    # carrier-grade NAT (RFC 6598), often the cluster's own network
    "192.0.0.0/24",     # IETF protocol assignments
    "198.18.0.0/15",    # benchmarking
    "224.0.0.0/4",      # multicast
    "240.0.0.0/4",      # reserved, and the broadcast address
    "fc00::/7",         # unique local
    "fe80::/10",        # link-local
    "fec0::/10",        # site-local (deprecated, still routed by some stacks)
    "ff00::/8",         # multicast
    "2001:db8::/32",    # documentation
))
# Names that never mean a host on the public internet.
_INTERNAL_SUFFIXES: Final = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_SIXTOFOUR: Final = ipaddress.ip_network("2002::/16")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo client), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIXTOFOUR:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True only for a globally routable unicast address (and IPv6 forms of one)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:  # fe80::1%eth0 and the like
            return False
        inner = _embedded_v4(ip)
        if inner is not None:
            return is_public_address(inner)
    if (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global):
        return False
    return not any(ip in net for net in _BLOCKED_NETWORKS if net.version == ip.version)


def _literal_ip(host: str) -> IPAddress | None:
    """`host` as an IP address if it is one, including the legacy IPv4 forms resolvers accept
    ("127.1", "2130706433", "0x7f.0.0.1"), which would otherwise pass as host names."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0] if ":" in host else host)
    except ValueError:
        pass
    if ":" in host:
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _refuse_ip(ip: IPAddress, allow_private: bool) -> None:
    if allow_private:
        # Even the dev stack never means these: no unicast host listens there.
        if ip.is_multicast or ip.is_unspecified:
            raise UnsafeWebhookTarget(f"{ip} is not a unicast address")
        return
    if not is_public_address(ip):
        raise UnsafeWebhookTarget("the URL's host must be a public internet address, not a loopback, "
                                  "private, link-local or reserved one")


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """Return `url` if the cell may POST to it, else raise UnsafeWebhookTarget (a ValueError).

    No DNS lookup: this runs in request handlers. Names are checked by `resolve_public` at send time.
    """
    if any(c.isspace() or not c.isprintable() for c in url):
        raise UnsafeWebhookTarget("the URL may not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port outside 0-65535
    except ValueError:
        raise UnsafeWebhookTarget("not a valid URL") from None
    if "@" in parts.netloc:
        # Stored with the endpoint, listed back to every reader, and never a secret to the cell.
        raise UnsafeWebhookTarget("the URL may not carry a user name or password (user:password@host); "
                                  "put credentials nowhere in the URL: receivers verify the webhook "
                                  "signature instead")
    allowed = ("http", "https") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise UnsafeWebhookTarget("the URL must be https" if not allow_private
                                  else "the URL must be http or https")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host or port == 0:
        raise UnsafeWebhookTarget("the URL needs a host")
    ip = _literal_ip(host)
    if ip is not None:
        _refuse_ip(ip, allow_private)
        return url
    if not allow_private:
        if host == "localhost" or host.endswith(_INTERNAL_SUFFIXES):
            raise UnsafeWebhookTarget("the URL's host must be a public internet name")
        if "." not in host:
            # A single label resolves through the search domains: a container or cluster service.
            raise UnsafeWebhookTarget("the URL's host must be a fully qualified public name")
    return url


async def resolve_public(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Resolve `host` and return its addresses (as strings, resolver order, no duplicates).

    Raises UnsafeWebhookTarget if any address is not public (unless allow_private): a name that
    resolves to a mix is refused, since the connection could take either. Raises OSError
    (socket.gaierror) if the name does not resolve, which is worth retrying later.
    """
    name = host.strip("[]").rstrip(".").lower()
    if not name:
        raise UnsafeWebhookTarget("the URL needs a host")
    literal = _literal_ip(name)
    if literal is not None:
        _refuse_ip(literal, allow_private)
        return [str(literal)]
    if not allow_private and (name == "localhost" or name.endswith(_INTERNAL_SUFFIXES) or "." not in name):
        raise UnsafeWebhookTarget("the URL's host must be a public internet name")
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM,
                                                         proto=socket.IPPROTO_TCP)
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and len(sockaddr) >= 4 and sockaddr[3]:
            ip = ipaddress.IPv6Address(f"{ip}%{sockaddr[3]}")  # keep the zone: is_public refuses it
        _refuse_ip(ip, allow_private)
        if str(ip) not in out:
            out.append(str(ip))
    if not out:
        raise socket.gaierror(socket.EAI_NONAME, "the host name has no addresses")
    return out


def url_origin(url: str) -> str:
    """scheme://host[:port] of `url`: what may be logged or audited (the path and query may hold a
    token, and user:password@ certainly does)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


@dataclass(frozen=True)
class PinnedTarget:
    """A request aimed at one checked address: the URL names the address, while the Host header and
    the TLS server name (SNI and certificate check) stay the URL's own host name."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, str]


def pin_to_address(url: str, address: str) -> PinnedTarget:
    """`url` rewritten to connect to `address` (one that `resolve_public` returned) and nowhere else."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _literal_ip(host.strip("[]")) is not None:
        return PinnedTarget(url, {}, {})
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    # Headers and the TLS server name are ASCII: an internationalised name goes as its punycode.
    ascii_host = host.encode("idna").decode("ascii")
    host_header = f"{ascii_host}:{parts.port}" if parts.port else ascii_host
    extensions = {"sni_hostname": ascii_host} if parts.scheme == "https" else {}
    return PinnedTarget(urlunsplit(parts._replace(netloc=netloc)), {"host": host_header}, extensions)
