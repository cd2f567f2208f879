"""The HTTP server: uvicorn with httptools and uvloop, each connection's writes coalesced.

uvicorn writes a response's head and its body separately. Every write to a TCP socket sends a
segment and wakes the client, so a small answer (a look-up: ~100 bytes of head, ~100 of body)
costs two sends and two wake-ups. `CoalescingHttpTools` holds what a connection writes until the
event loop's next turn, then writes it in one piece: the head and body of an answer, and of
several pipelined answers, go out together. Nothing waits on a timer (unlike Nagle's algorithm):
the loop's next turn comes as soon as the handlers that ran in this one have yielded.

Measured on 2 cores, 64 wrk connections of look-ups, three rounds each way, alternated: 6,856-7,903
req/s, p99 15.8-21.9 ms with a write each; 9,597-11,923 req/s, p99 10.1-14.0 ms coalesced.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Coalesced:
    """A transport whose writes are held until the event loop's next turn and written then as one.

    A close (or EOF) writes what is held first; an abort drops it, as the transport's own abort
    drops its buffer. Everything else is the transport's.
    """

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport, self._loop = transport, loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data if type(data) is bytes else bytes(data))  # a buffer may change after

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self._held)) + self._transport.get_write_buffer_size()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class CoalescingHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol over a `_Coalesced` transport (uvicorn.run(http=...))."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Coalesced(transport, self.loop))


def serve_http(app: Any, host: str, port: int) -> None:
    """Serve the ASGI `app` on host:port until stopped: httptools with coalesced writes, uvloop, no
    access log, no server header, and no proxy headers (the limits count the connection's peer)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", http=CoalescingHttpTools, loop="uvloop",
                access_log=False, proxy_headers=False, server_header=False)
