"""Where a webhook may be sent: public addresses, and the networks an operator allows.

A tenant chooses the URL, and every attempt records the status code and the time the
answer took. Without a check a tenant could point the worker at the service's own
network (cloud metadata on 169.254.169.254, a database on 10.x, the host's loopback) and
read the attempts like a port scanner. So:

    address_refusal   why one address is refused (loopback, private, ...), or None
    url_refusal       at registration: the URL's literal address, or every address its
                      name resolves to, is refused
    post              at delivery: resolve the name once, check the address, connect to
                      that very address (a second lookup is where DNS rebinding would
                      slip in), never follow a redirect

The HTTP side is requests-hardened's session (``never_redirect``) and its adapter, which
connects to the resolved address while keeping the name for the ``Host`` header, SNI
and the certificate check. Its own filter knows one exception, loopback; the operator's
allow list (``IMPORTER_WEBHOOK_ALLOW_NETWORKS``) needs any network, so the adapter's one
resolving method runs this module's check instead.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Sequence
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests_hardened import HTTPSession
from requests_hardened.config import Config
from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES
from requests_hardened.ip_filter_adapter import IPFilterAdapter
from urllib3.util.connection import allowed_gai_family

from importer.config import IPNetwork

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Shared address space of carrier-grade NAT (RFC 6598): often routes to internal hosts.
CGNAT = ipaddress.ip_network("100.64.0.0/10")


class TargetRefused(requests.RequestException):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def address_refusal(address: Address, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not be a webhook's target (e.g. "a loopback address"), or
    None: a public address, or one in an allowed network."""
    # ::ffff:127.0.0.1 is 127.0.0.1 on the wire.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    candidates = (address,) if mapped is None else (address, mapped)
    if any(candidate in network for candidate in candidates for network in allowed):
        return None
    address = mapped or address
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address in CGNAT:
        return "a carrier-grade NAT address"
    if address.is_multicast:
        return "a multicast address"
    # requests-hardened's extra ranges: special-purpose blocks older Pythons call
    # global (192.0.0.0/24, 6to4, NAT64, ...).
    if address.is_reserved or any(address in network for network in EXTRA_BLOCKED_NET_RANGES):
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved address"
    return None


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to, in the resolver's order (urllib3's choice of
    families: IPv6 only where this host has it)."""
    found: list[Address] = []
    for *_, sockaddr in socket.getaddrinfo(
        host, port, family=allowed_gai_family(), type=socket.SOCK_STREAM
    ):
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def choose_address(host: str, port: int, allowed: Sequence[IPNetwork] = ()) -> Address:
    """The address to connect to for ``host``: the literal address itself, or the first
    address the name resolves to that is not refused. Raises :class:`TargetRefused`
    naming the reason when there is none, ``socket.gaierror`` when the name does not
    resolve."""
    literal = _literal(host)
    if literal is not None:
        reason = address_refusal(literal, allowed)
        if reason is not None:
            raise TargetRefused(f"{literal} is {reason}")
        return literal
    addresses = resolve(host, port)
    if not addresses:
        raise TargetRefused(f"{host} resolves to no address")
    for address in addresses:
        if address_refusal(address, allowed) is None:
            return address
    first = addresses[0]
    raise TargetRefused(f"{host} resolves to {first}, {address_refusal(first, allowed)}")


def _default_port(scheme: str) -> int:
    return 443 if scheme.lower() == "https" else 80


def url_refusal(url: str, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why a webhook may not be registered at ``url`` (already a valid http(s) URL), or
    None. A name that does not resolve now is let through: every delivery resolves and
    checks it again."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        choose_address(host, parts.port or _default_port(parts.scheme), allowed)
    except TargetRefused as refused:
        return str(refused)
    except (OSError, UnicodeError):
        return None
    return None


class CheckedAddressAdapter(IPFilterAdapter):  # type: ignore[misc]  # untyped library
    """requests-hardened's adapter with this module's address check in place of its
    filter (which allows no network but loopback)."""

    def __init__(self, *, is_https: bool, allowed: Sequence[IPNetwork]) -> None:
        super().__init__(is_https_proto=is_https)
        self.allowed = tuple(allowed)

    def build_connection_pool_key_attributes(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        cert: str | tuple[str, str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # As IPFilterAdapter does, with choose_address() where it calls its filter_host().
        host_params, pool_kwargs = HTTPAdapter.build_connection_pool_key_attributes(
            self, request, verify, cert
        )
        hostname: str = host_params["host"]
        port: int | None = host_params["port"]
        request.headers = CaseInsensitiveDict(request.headers or {})
        host_header = f"[{hostname}]" if ":" in hostname else hostname
        request.headers["Host"] = host_header if port is None else f"{host_header}:{port}"
        if self._is_https_proto:
            # The certificate is checked against the name, not the address connected to.
            pool_kwargs["assert_hostname"] = hostname
            pool_kwargs["server_hostname"] = hostname
        try:
            address = choose_address(
                hostname, port or _default_port(host_params["scheme"]), self.allowed
            )
        except socket.gaierror as error:
            raise requests.ConnectionError(f"Could not resolve {hostname}: {error}") from error
        host_params["host"] = str(address) if address.version == 4 else f"[{address}]"
        return host_params, pool_kwargs


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    allowed: Sequence[IPNetwork] = (),
) -> int:
    """POST to ``url`` if its address may be reached; the answer's status code (its body
    is not read). Raises :class:`TargetRefused` before connecting when it may not, and
    ``requests`` exceptions when no answer came."""
    config = Config(
        ip_filter_enable=False,  # CheckedAddressAdapter below is the filter
        ip_filter_allow_loopback_ips=False,
        never_redirect=True,
        default_timeout=(timeout, timeout),
    )
    with HTTPSession(config) as session:
        # No proxy or .netrc from the environment: the connection goes to the address
        # that was checked, and nothing else is sent.
        session.trust_env = False
        session.mount("http://", CheckedAddressAdapter(is_https=False, allowed=allowed))
        session.mount("https://", CheckedAddressAdapter(is_https=True, allowed=allowed))
        with session.post(
            url, data=body, headers=headers, timeout=(timeout, timeout), stream=True
        ) as response:
            status: int = response.status_code
            return status
