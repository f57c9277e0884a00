"""Outbound calls only where they belong: no server-side request forgery.

A seller registers URLs that our servers then call (webhook endpoints, a refund
provider's ``base_url``). Without a check, a URL naming ``127.0.0.1:5432``, the cloud's
metadata address ``169.254.169.254`` or a host on the private network turns the worker
into a probe of our own network (the delivery log tells open ports from closed ones).

Addresses are checked twice:

- **when a URL is registered**, so a seller learns at once (422 naming the field). The
  host is resolved as the worker will resolve it, so every spelling of an address
  (``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``[::ffff:127.0.0.1]``) and every
  name that resolves to one (``localhost``) is caught. A name that does not resolve
  yet is accepted: the second check catches it;
- **when connecting**, after DNS resolution, by the HTTP transport every outbound
  client uses (``guarded_client``): the connection goes to the very address that was
  checked, so a name that resolves to a public address at registration and to a
  private one later (DNS rebinding) is refused too.

Only public unicast addresses are allowed: loopback, private (RFC 1918, unique local),
link-local (the metadata service), shared (carrier-grade NAT), multicast, reserved,
unspecified and documentation ranges are refused unless a network is listed in
``RETURNGUARD_OUTBOUND_ALLOWED_NETWORKS`` (local development and the tests list
loopback there). See docs/webhooks.md, "Where webhooks may point".
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import httpcore
import httpx

from returnguard.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses it stands for (socket.getaddrinfo by default).
Resolver = Callable[[str, int], list[str]]


class OutboundRefused(Exception):
    """The address a URL leads to is not one our servers may call."""


class Unresolved(OutboundRefused):
    """The host does not resolve (now): nothing to call, nothing to judge yet."""


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The networks of a setting (CIDRs or single addresses); ValueError on a bad one."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _unmapped(address: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 and 64:ff9b::7f00:1 reach IPv4 hosts: judge the IPv4 address.
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


class Egress:
    """Which addresses outbound calls may reach (public unicast, plus ``allowed``)."""

    def __init__(
        self, allowed: Sequence[IPNetwork] = (), *, resolver: Resolver | None = None
    ) -> None:
        self.allowed = tuple(allowed)
        self.resolve_host: Resolver = resolver or _system_resolver

    @classmethod
    def from_settings(cls, settings: Any) -> Egress:
        return cls(parse_networks(settings.outbound_allowed_networks))

    def refusal(self, address: str) -> str | None:
        """Why ``address`` may not be called, or None when it may."""
        ip = _unmapped(ipaddress.ip_address(address.split("%", 1)[0]))
        if any(ip in net for net in self.allowed if net.version == ip.version):
            return None
        if ip.is_loopback:
            return "a loopback address"
        if ip.is_link_local:
            return "a link-local address (cloud metadata lives there)"
        if ip.is_multicast:
            return "a multicast address"
        if ip.is_unspecified:
            return "the unspecified address"
        if ip.is_private or (
            isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10")
        ):
            return "a private address"
        if ip.is_reserved or not ip.is_global:
            return "a reserved address"
        return None

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` resolves to, all of them allowed; OutboundRefused when
        one is not (a name must not lead anywhere forbidden, even among good ones)."""
        try:
            found = self.resolve_host(host, port)
        except (OSError, UnicodeError) as exc:
            raise Unresolved(f"{host} does not resolve ({exc})") from None
        if not found:
            raise Unresolved(f"{host} does not resolve")
        for address in found:
            why = self.refusal(address)
            if why is not None:
                raise OutboundRefused(f"{host} resolves to {address}, {why}")
        return found

    def check_url(self, url: str, field: str) -> None:
        """At registration: 422 naming ``field`` when the URL's host leads to an address
        we may not call. A name that does not resolve (yet) passes; connecting checks."""
        try:
            parsed = httpx.URL(url)
            host = parsed.host
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except (httpx.InvalidURL, ValueError):
            raise InvalidInput.field(field, "is not a valid URL") from None
        try:
            self.addresses(host, port)
        except Unresolved:
            return
        except OutboundRefused as exc:
            raise InvalidInput.field(
                field,
                f"must point at a public address: {exc} (allow a network with "
                "RETURNGUARD_OUTBOUND_ALLOWED_NETWORKS for local development)",
            ) from None


# --- the transport ---------------------------------------------------------------------


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects only to checked addresses: resolves the host itself, refuses any name
    that leads to a forbidden one, and connects to the address it checked (so DNS is
    not asked again between the check and the connection)."""

    def __init__(self, egress: Egress) -> None:
        self.egress = egress
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.egress.addresses(host, port)
        except OutboundRefused as exc:
            raise httpcore.ConnectError(f"refused: {exc}") from None
        last: Exception | None = None
        for address in addresses:
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("refused: unix sockets are not an outbound destination")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


# httpcore's exceptions as httpx's, as httpx's own transport maps them.
_MAPPED: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


def _mapped(exc: Exception) -> Exception:
    for theirs, ours in _MAPPED:
        if isinstance(exc, theirs):
            return ours(str(exc))
    return exc


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.stream
        except Exception as exc:
            raise _mapped(exc) from exc

    def close(self) -> None:
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()


class GuardedTransport(httpx.BaseTransport):
    """An HTTP transport (no proxies from the environment) whose every connection goes
    through the egress check."""

    def __init__(self, egress: Egress, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or ssl.create_default_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(egress),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            answer = self.pool.handle_request(core)
        except Exception as exc:
            raise _mapped(exc) from exc
        assert isinstance(answer.stream, Iterable)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer.stream),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        self.pool.close()


def guarded_client(egress: Egress, *, timeout: float) -> httpx.Client:
    """The HTTP client for every call to a URL a seller gave us."""
    return httpx.Client(transport=GuardedTransport(egress), timeout=timeout, trust_env=False)
