"""The one door for POSTs to URLs someone else chose: merchant webhooks and every simulator's notify.

Outside the local stages only https, and the host must resolve to public addresses only (no loopback,
private, link-local, multicast or reserved ranges, IPv4 or IPv6, also when an IPv6 address carries an
IPv4 one). The rule is checked when a URL is registered and again at every send, on the address the
socket actually connects to: the connection resolves, checks and connects in one step, so a DNS answer
that changes in between cannot slip through. Redirects are never followed and answers are read bounded.
The stack's own public base URL is always allowed (the simulators call our callbacks there).
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from chalicelib import http, settings

MAX_ANSWER_BYTES = 64 * 1024
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """The URL (or what its host resolves to) may not receive our requests."""


class Failed(Exception):
    """A send that did not get an answer: refused, unreachable, timed out or answered too much."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def _system_resolver(host: str, port: int) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


_resolver: Callable[[str, int], list[str]] = _system_resolver


def use_resolver(resolver: Callable[[str, int], list[str]] | None) -> None:
    """Swap name resolution (tests: no DNS traffic leaves the machine); None restores the system's."""
    global _resolver
    _resolver = resolver or _system_resolver


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(address: str, local: bool) -> str | None:
    """Why we may not connect to this address (None: we may)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and _embedded_v4(ip) is not None:
        ip = _embedded_v4(ip)
    if ip.is_loopback:
        return None if local else "loopback address"
    if ip.is_multicast:
        return "multicast address"
    if not ip.is_global:
        return "private, link-local or reserved address"
    return None


def _own_host(host: str, port: int) -> bool:
    """Is this the stack's own public base URL's host and port (our callbacks, our pages)?"""
    own = urlsplit(settings.get().public_base_url)
    return (host.lower(), port) == ((own.hostname or "").lower(), own.port or (443 if own.scheme == "https" else 80))


def _host_port(url: str) -> tuple[str, int, bool]:
    """(host, port, is our own base URL) of a URL whose shape we may send to; raises Refused."""
    local = settings.get().local_receivers
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("is not a valid URL") from None
    if not host or parts.scheme not in ("https", "http"):
        raise Refused("is not an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise Refused("must not carry credentials")
    if _own_host(host, port) and parts.scheme == urlsplit(settings.get().public_base_url).scheme:
        return host, port, True
    if parts.scheme != "https" and not local:
        raise Refused("must use https")
    return host, port, False


def vetted_addresses(host: str, port: int) -> list[str]:
    """Every address the host resolves to, if all of them may be connected to; raises Refused."""
    local = settings.get().local_receivers
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses = [host]
    except ValueError:
        try:
            addresses = _resolver(host.rstrip("."), port)
        except (OSError, UnicodeError):
            raise Refused("host does not resolve") from None
    if not addresses:
        raise Refused("host does not resolve")
    for address in addresses:
        problem = address_problem(address, local)
        if problem:
            raise Refused(f"host resolves to a {problem}")
    return addresses


def check(url: str) -> None:
    """Raise Refused unless we may send to this URL (at registration, and before every send)."""
    host, port, own = _host_port(url)
    if not own:
        vetted_addresses(host, port)


def post(url: str, body: bytes, headers: dict[str, str], timeout: int,
         max_bytes: int = MAX_ANSWER_BYTES) -> Answer:
    """POST once, without following redirects; raises Failed (with a short reason) for no answer."""
    import requests

    try:
        check(url)
        resp = http.session(guarded=True).post(url, data=body, headers=headers, timeout=timeout,
                                               allow_redirects=False, stream=True)
        answer = http.read_bounded(resp, max_bytes)
    except Refused as exc:
        raise Failed(f"refused: {exc}") from None
    except requests.RequestException as exc:
        refused = _refusal_in(exc)
        raise Failed(f"refused: {refused}" if refused else type(exc).__name__) from None
    if answer is None:
        raise Failed(f"answer over {max_bytes} bytes")
    return Answer(resp.status_code, answer)


def _refusal_in(exc: BaseException) -> str | None:
    """The Refused our connection raised, found under requests' and urllib3's wrappers (None: none)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None or isinstance(seen, Refused):
            return None if seen is None else str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


# ---- the connection that checks the address it connects to ------------------------------------------

def guarded_adapter():
    """A requests adapter whose connections connect only to vetted addresses (see module doc)."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.exceptions import NewConnectionError
    from urllib3.util import connection as util

    class _Vetted:
        def _new_conn(self):
            own = _own_host(self.host, self.port)
            try:
                addresses = [self._dns_host] if own else vetted_addresses(self._dns_host, self.port)
            except Refused as exc:
                raise NewConnectionError(self, f"refused: {exc}") from exc
            sock = None
            error: OSError | None = None
            for address in addresses:  # connect to exactly what was checked, never resolve again
                try:
                    sock = util.create_connection((address, self.port), self.timeout,
                                                  source_address=self.source_address,
                                                  socket_options=self.socket_options)
                    break
                except OSError as exc:
                    error = exc
            if sock is None:
                raise NewConnectionError(self, f"failed to connect: {type(error).__name__}")
            peer = sock.getpeername()[0]
            problem = None if own else address_problem(peer, settings.get().local_receivers)
            if problem:
                sock.close()
                raise NewConnectionError(self, f"refused: connected to a {problem}")
            return sock

    class _VettedHTTP(_Vetted, HTTPConnection):
        pass

    class _VettedHTTPS(_Vetted, HTTPSConnection):
        pass

    class _HTTPPool(HTTPConnectionPool):
        ConnectionCls = _VettedHTTP

    class _HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _VettedHTTPS

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

        def proxy_manager_for(self, *args, **kwargs):
            raise Refused("egress never goes through a proxy")

    return GuardedAdapter()
