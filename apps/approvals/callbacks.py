"""Signed callbacks to agents: where we may send them, how they are signed, and the one request.

A callback URL is the agent's to choose, so it is a request the plane makes on someone else's
behalf (server-side request forgery). It is checked when the plan is submitted and again right
before every delivery: the host must resolve only to public addresses (no loopback, private,
link-local, cloud metadata, multicast or reserved ranges) unless it is listed in
`CALLBACK_ALLOW_HOSTS`. The request then goes to the very address that was checked (no second
DNS lookup that could answer differently), never follows a redirect and gives up after
`CALLBACK_TIMEOUT` seconds.

Signature: header `X-CP-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
A receiver recomputes it over the raw body and refuses a `t` older than five minutes (the README
has the recipe).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings

from apps.core.exceptions import InvalidRequest

SIGNATURE_HEADER = "X-CP-Signature"
DELIVERY_HEADER = "X-CP-Delivery"
REPLAY_WINDOW_SECONDS = 300
MAX_ANSWER_BYTES = 64 * 1024


class DestinationRefused(InvalidRequest):
    """The callback URL is not one the plane will call."""

    default_message = "The callback URL is not a public http(s) address."


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str  # as written in the URL (Host header, TLS name)
    port: int
    path: str  # path and query
    address: str  # the checked IP the request goes to


def allowed_hosts() -> set[str]:
    return {h.strip().lower() for h in settings.CALLBACK_ALLOW_HOSTS if h.strip()}


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global is False for loopback, RFC 1918, link-local (169.254/16: cloud metadata), CGNAT,
    # unique-local IPv6, documentation and reserved ranges; multicast is refused on its own.
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise DestinationRefused(f"The callback host {host!r} does not resolve.", field="callback_url") from None
    return sorted({info[4][0] for info in infos})


def check_destination(url: str) -> Destination:
    """Refuse `url` unless it is http(s) to a host that resolves only to public addresses (or is
    allow-listed). Returns where to send it."""
    try:
        parts = urlsplit(url or "")
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DestinationRefused("The callback URL is not a valid URL.", field="callback_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("The callback URL must be http:// or https:// with a host.", field="callback_url")
    if parts.username or parts.password:
        raise DestinationRefused("The callback URL must not carry credentials.", field="callback_url")
    host = parts.hostname.lower()
    addresses = _resolve(host, port)
    if not addresses:
        raise DestinationRefused(f"The callback host {host!r} does not resolve.", field="callback_url")
    if host not in allowed_hosts():
        blocked = [a for a in addresses if not is_public(a)]
        if blocked:
            raise DestinationRefused(
                f"The callback host {host!r} resolves to a non-public address ({blocked[0]}); "
                "list it in CALLBACK_ALLOW_HOSTS if it is really yours.", field="callback_url")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(scheme=parts.scheme, host=host, port=port, path=path, address=addresses[0])


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, now: float | None = None,
           window: int = REPLAY_WINDOW_SECONDS) -> bool:
    """What a receiver does (and the README shows): recompute, compare in constant time, refuse
    a signature older than the replay window."""
    try:
        fields = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > window:
        return False
    expected = sign(secret, body, timestamp=timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


@dataclass(frozen=True)
class Answer:
    status: int


def send(destination: Destination, *, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` to the checked address. No redirects, no retries here, bounded time and size.
    Raises OSError/urllib3 errors on transport failure."""
    timeout = urllib3.Timeout(total=settings.CALLBACK_TIMEOUT)
    host_header = destination.host if destination.port in (80, 443) else f"{destination.host}:{destination.port}"
    if destination.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            destination.address, destination.port, timeout=timeout, retries=False, maxsize=1,
            server_hostname=destination.host, assert_hostname=destination.host,
            cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    else:
        pool = urllib3.HTTPConnectionPool(destination.address, destination.port, timeout=timeout, retries=False,
                                          maxsize=1)
    try:
        response = pool.urlopen(
            "POST", destination.path, body=body, redirect=False, retries=False, preload_content=False,
            headers={**headers, "Host": host_header, "Content-Type": "application/json",
                     "User-Agent": "bitrix24-control-plane-callback/1"})
        try:
            response.read(MAX_ANSWER_BYTES)
        finally:
            response.release_conn()
        return Answer(status=response.status)
    finally:
        pool.close()
