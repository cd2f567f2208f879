"""What the HTTP service lets in, and the security headers of what it answers: pure ASGI middleware.

`Limits` refuses before the application runs where it can: a client or key over its request rate
(429), a body declared larger than its route allows (413), more requests in flight than the
service takes (503, no queueing: a queue would hold connections and bodies in memory; the client
comes back after `Retry-After`). A body sent without a length is counted while it streams in and
refused (413) as soon as it passes the limit, and the connection is closed rather than read to its
end. `SecurityHeaders` adds the headers that keep the pages from being framed, sniffed or made to
run scripts of another origin.

Both wrap the whole application, the look-up hot path included, and cost a few dictionary reads
and one wrapped `send` per request.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from socialcredit.service._errors import TooLarge
from socialcredit.service._service import Settings

EVENTS_PATH = "/api/events"  # the one route whose bodies are batches: `Settings.max_body_bytes`
# The pages, /docs (Swagger UI, see _app) included, load their scripts and styles from the app only;
# scripts run from files, never inline
# (the dashboard's data sits in a <script type="application/json"> block, which is not run). Styles
# allow 'unsafe-inline': the class badges colour themselves in a style attribute and Plotly styles
# its charts through style attributes and a <style> element it writes; a style cannot run code.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
               "frame-ancestors 'none'")
# Referrer-Policy same-origin, not no-referrer: under no-referrer a browser sends "Origin: null"
# with a form POST, and the pages tell their own forms from another site's by the Origin.
_COMMON_HEADERS = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                   (b"referrer-policy", b"same-origin")]
SECURITY_HEADERS = [(b"content-security-policy", PAGE_POLICY.encode()), *_COMMON_HEADERS]


class SecurityHeaders:
    """Adds the security headers to every HTTP response of `app`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class TokenBuckets:
    """Token buckets by name: each fills at `rate` tokens a second up to `burst`; a request takes one.

    A bucket that has filled up again is as good as a new one, so when more than `max_names` are
    held, the full ones are dropped (and, should that not be enough, the oldest half).
    """

    def __init__(self, rate: float, burst: float, *, max_names: int = 10_000):
        self.rate, self.burst, self.max_names = rate, burst, max_names
        self._buckets: dict[object, list[float]] = {}  # name -> [tokens, when they were counted]

    def __contains__(self, name: object) -> bool:
        return name in self._buckets

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, name: object, now: float) -> float:
        """Take a token from `name`'s bucket: 0.0 when taken, else the seconds until one is there."""
        bucket = self._buckets.get(name)
        if bucket is None:
            self.add(name, now)
            bucket = self._buckets[name]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return 0.0
        bucket[0] = tokens
        return (1 - tokens) / self.rate

    def add(self, name: object, now: float) -> None:
        """Give `name` a full bucket."""
        if len(self._buckets) >= self.max_names:
            self._sweep(now)
        self._buckets[name] = [self.burst, now]

    def forget(self, name: object) -> None:
        """Drop `name`'s bucket."""
        self._buckets.pop(name, None)

    def _sweep(self, now: float) -> None:
        rate, burst = self.rate, self.burst
        self._buckets = {name: b for name, b in self._buckets.items() if b[0] + (now - b[1]) * rate < burst}
        if len(self._buckets) >= self.max_names:
            names = list(self._buckets)
            self._buckets = {name: self._buckets[name] for name in names[len(names) // 2:]}


class Limits:
    """Request rates, body sizes and requests in flight of `app`, as `settings` sets them.

    Rates: a request that names a key (the first `Authorization: Bearer`, as the routes read it, or
    the pages' session cookie `key_cookie`) is counted against that key once it has had an answer
    other than 401 and `is_key` confirms it is a live key or session (a made-up one answered by a
    route that reads no key stays unknown); every other request (no key, a key not yet answered, a
    refused or made-up key, a sign-in form) is counted against the client's address, so a flood of
    made-up keys exhausts its address. The address is the peer of the connection (`serve` reads no
    proxy headers).
    """

    def __init__(self, app: ASGIApp, settings: Settings, *, key_cookie: str, is_key: Callable[[bytes], bool]):
        for name in ("max_body_bytes", "max_other_body_bytes", "rate_per_key", "rate_per_address", "max_in_flight",
                     "max_batches_in_flight"):
            if not getattr(settings, name) > 0:
                raise ValueError(f"Settings.{name} must be above 0, not {getattr(settings, name)!r}")
        for name in ("burst_per_key", "burst_per_address"):  # a request takes a whole token
            if not getattr(settings, name) >= 1:
                raise ValueError(f"Settings.{name} must be at least 1, not {getattr(settings, name)!r}")
        self.app = app
        self.settings = settings
        self.is_key = is_key
        self.keys = TokenBuckets(settings.rate_per_key, settings.burst_per_key)
        self.addresses = TokenBuckets(settings.rate_per_address, settings.burst_per_address)
        self.in_flight = 0
        self.batches_in_flight = 0
        self._cookie = key_cookie.encode() + b"="

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.settings
        secret = declared = cookies = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                if value[:7].lower() == b"bearer " and secret is None:
                    secret = value[7:].strip() or None
            elif name == b"content-length":
                declared = value
            elif name == b"cookie":
                cookies = value
            elif name == b"transfer-encoding":
                chunked = True
        if secret is None and cookies is not None:
            secret = _cookie(cookies, self._cookie)

        now = time.monotonic()
        known_key = secret is not None and secret in self.keys
        if known_key:
            wait = self.keys.take(secret, now)
        else:
            client = scope.get("client")
            wait = self.addresses.take(client[0] if client else None, now)
        if wait:
            await _refuse(send, 429, "too many requests: slow down" if known_key else
                          "too many requests from this address, or with keys that are refused: slow down",
                          (b"retry-after", str(max(1, math.ceil(wait))).encode()))
            return

        batch = scope["path"] == EVENTS_PATH
        limit = settings.max_body_bytes if batch else settings.max_other_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, 413, f"body of {int(declared):,} bytes; at most {limit:,}", _CLOSE)
            return
        if (self.in_flight >= settings.max_in_flight
                or (batch and self.batches_in_flight >= settings.max_batches_in_flight)):
            await _refuse(send, 503, "the service is busy: try again shortly", (b"retry-after", b"1"))
            return

        self.in_flight += 1
        self.batches_in_flight += batch
        try:
            if chunked or (declared is not None and declared != b"0"):
                await self._with_body(scope, receive, send, limit, secret, known_key, now)
            else:  # no body: nothing to count (a look-up, a page)
                await self.app(scope, receive, send if secret is None else self._settling(send, secret, known_key, now))
        finally:
            self.in_flight -= 1
            self.batches_in_flight -= batch

    def _settle(self, secret: bytes, known_key: bool, status: int, now: float) -> None:
        """Give a key its own bucket once it is answered, and take it away when it is refused."""
        if status == 401:
            self.keys.forget(secret)  # refused from now on: its requests count against the address
        elif not known_key and self.is_key(secret):
            self.keys.add(secret, now)

    def _settling(self, send: Send, secret: bytes, known_key: bool, now: float) -> Send:
        """`send`, settling the key's bucket by the answer's status."""
        async def settling_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._settle(secret, known_key, message["status"], now)
            await send(message)

        return settling_send

    async def _with_body(self, scope: Scope, receive: Receive, send: Send, limit: int, secret: bytes | None,
                         known_key: bool, now: float) -> None:
        """Run the app on a request with a body, refused (413) once more than `limit` bytes came in."""
        received = 0
        refused: TooLarge | None = None
        started = False  # a response started (after a refused body: our 413, or the app's own)
        dropping = False  # the app answers a body it could not read whole; our 413 went instead

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = TooLarge(f"body larger than {limit:,} bytes")
                    raise refused
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started, dropping
            if message["type"] == "http.response.start":
                started = True
                if refused is not None:
                    if message["status"] != 413:  # whatever the app made of the cut body (FastAPI: a 400)
                        dropping = True
                        await _refuse(send, 413, refused.message, _CLOSE)
                        return
                    message["headers"] = [*message.get("headers", ()), _CLOSE]  # the app's own 413
                elif secret is not None:
                    self._settle(secret, known_key, message["status"], now)
            elif dropping:
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except Exception:
            if refused is None:
                raise
        if refused is not None and not started:
            await _refuse(send, 413, refused.message, _CLOSE)


_CLOSE = (b"connection", b"close")  # uvicorn then closes the connection instead of reading the body on


def _cookie(header: bytes, prefix: bytes) -> bytes | None:
    """The value of the cookie whose `name=` is `prefix`, from a Cookie header."""
    for part in header.split(b";"):
        part = part.strip()
        if part.startswith(prefix):
            return part[len(prefix):] or None
    return None


async def _refuse(send: Send, status: int, message: str, *headers: tuple[bytes, bytes]) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
