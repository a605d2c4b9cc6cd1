"""Bearer tokens with scopes, and per-token rate limits, in front of every route.

Scopes: ``ingest`` (POST /v1/events, /v1/traces, /v1/logs; optionally only for some systems),
``read`` (the APIs, pages, feed and metrics) and ``admin`` (what changes state: evaluate,
replay, silences, demo controls; it includes ``read``). Probes, static files and the login page
need none.

A token is presented as ``Authorization: Bearer <token>``, or, for browsers, as the HttpOnly
``flowsight_token`` cookie that ``POST /login`` sets (SameSite=Strict, so other sites cannot
make a browser use it). Presented tokens are hashed with SHA-256 and compared with every
configured digest in constant time; neither tokens nor digests are logged.

With no tokens configured there is no check at all, and ``flowsight serve`` listens on
loopback only (see :func:`loopback_only`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import orjson

COOKIE = "flowsight_token"
SCOPES = ("ingest", "read", "admin")
INGEST_PATHS = frozenset({"/v1/events", "/v1/traces", "/v1/logs", "/v1/metrics"})
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login", "/logout", "/favicon.svg", "/favicon.ico"})
OPEN_PREFIXES = ("/static/",)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a configured token's name, scopes and limits."""

    name: str
    scopes: frozenset[str]
    systems: frozenset[str] | None = None
    requests_per_second: float | None = None

    def may(self, scope: str) -> bool:
        return scope in self.scopes or (scope == "read" and "admin" in self.scopes)


@dataclass(frozen=True)
class Token:
    principal: Principal
    digest: bytes  # SHA-256 of the token


def digest_of(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class TokenSet:
    """The configured tokens."""

    tokens: tuple[Token, ...]

    def __len__(self) -> int:
        return len(self.tokens)

    def match(self, presented: str) -> Principal | None:
        """The principal whose token this is. Every digest is compared, in constant time, so
        the time taken says nothing about which (or how much of one) matched."""
        digest = digest_of(presented)
        found: Principal | None = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.digest):
                found = token.principal
        return found


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs, or None for the open routes."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    if path in INGEST_PATHS:
        return "ingest"
    if method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    return "admin"


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per principal: ``rate`` requests a second, bursts of ``burst``."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_seconds(self, principal: Principal) -> float:
        """0 when the request may go now (and takes its share); else seconds until it may."""
        rate = principal.requests_per_second or self.rate
        if rate <= 0:
            return 0.0
        burst = max(self.burst, rate) if principal.requests_per_second is None else max(rate, 1.0)
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(principal.name)
            if bucket is None:
                bucket = self._buckets[principal.name] = _Bucket(burst, now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def presented_token(scope: Scope) -> str | None:
    """The bearer token of a request, from its Authorization header or login cookie."""
    authorization = _header(scope, b"authorization")
    if authorization:
        kind, _, value = authorization.partition(" ")
        if kind.lower() == "bearer" and value.strip():
            return value.strip()
    cookies = _header(scope, b"cookie")
    if cookies:
        for part in cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                return value
    return None


async def _reply(
    send: Send, status: int, body: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _wants_html(scope: Scope) -> bool:
    return scope.get("method") == "GET" and "text/html" in (_header(scope, b"accept") or "")


class AuthMiddleware:
    """ASGI middleware: authenticate, authorise by scope, rate-limit; puts the
    :class:`Principal` in ``scope["state"]["principal"]`` for the routes."""

    def __init__(self, app: ASGIApp, tokens: TokenSet | None, limiter: RateLimiter):
        self.app = app
        self.tokens = tokens
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.tokens is None:
            await self.app(scope, receive, send)
            return
        needed = required_scope(scope.get("method", "GET"), scope["path"])
        if needed is None:
            await self.app(scope, receive, send)
            return
        presented = presented_token(scope)
        principal = self.tokens.match(presented) if presented else None
        if principal is None:
            if _wants_html(scope):
                target = scope["path"] + (
                    "?" + scope["query_string"].decode() if scope.get("query_string") else ""
                )
                await send(
                    {
                        "type": "http.response.start",
                        "status": 303,
                        "headers": [(b"location", f"/login?next={quote(target, safe='')}".encode())],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
            reason = "a bearer token is required" if presented is None else "the token is not valid"
            await _reply(
                send,
                401,
                {"error": f"{reason} (Authorization: Bearer <token>)"},
                [(b"www-authenticate", b'Bearer realm="flowsight"')],
            )
            return
        if not principal.may(needed):
            await _reply(
                send,
                403,
                {"error": f"token {principal.name!r} lacks the {needed!r} scope this request needs"},
            )
            return
        wait = self.limiter.wait_seconds(principal)
        if wait > 0:
            await _reply(
                send,
                429,
                {"error": f"token {principal.name!r} is over its rate limit; retry later"},
                [(b"retry-after", str(max(1, math.ceil(wait))).encode())],
            )
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def principal_of(state: Any) -> Principal | None:
    """The principal a request was authenticated as (None without tokens configured)."""
    return getattr(state, "principal", None)


def safe_next(value: str | None) -> str:
    """A redirect target after login: a path on this site, never another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def form_field(body: bytes, name: str) -> str | None:
    values = parse_qs(body.decode("utf-8", "replace")).get(name)
    return values[0] if values else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_only(host: str, tokens: TokenSet | None) -> tuple[str, str | None]:
    """The host to listen on, and a notice when it differs from the one asked for."""
    if tokens is not None or is_loopback(host):
        return host, None
    return "127.0.0.1", (
        f"no tokens are configured (tokens_file): listening on 127.0.0.1 only, not {host}. "
        "Configure tokens to serve other hosts."
    )


def redact_dsn(dsn: str) -> str:
    """A DSN fit for a log line: any password replaced by ``***``."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
