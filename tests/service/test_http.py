"""The HTTP server's protocol: a connection's writes of one event-loop turn go out as one, with the
same bytes, in the same order, before the connection closes."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from socialcredit.service._http import CoalescingHttpTools, _Coalesced


def _run(main):
    """asyncio.run(main()) on a thread of its own: the suite's browser tests leave an event loop
    running on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


class RecordingTransport(asyncio.Transport):
    """A transport that records what is done to it, in order."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []
        self.closing = False

    def write(self, data):
        assert not self.closing, "written after close"
        self.calls.append(("write", bytes(data)))

    def close(self):
        self.calls.append(("close",))
        self.closing = True

    def abort(self):
        self.calls.append(("abort",))
        self.closing = True

    def write_eof(self):
        self.calls.append(("eof",))

    def is_closing(self):
        return self.closing

    def get_write_buffer_size(self):
        return 0

    def get_extra_info(self, name, default=None):
        return default

    def pause_reading(self):
        self.calls.append(("pause_reading",))

    def resume_reading(self):
        self.calls.append(("resume_reading",))

    def writes(self) -> list[bytes]:
        return [c[1] for c in self.calls if c[0] == "write"]


def test_writes_are_held_until_the_next_turn_then_written_as_one():
    async def main():
        real = RecordingTransport()
        t = _Coalesced(real, asyncio.get_running_loop())
        t.write(b"head ")
        t.write(b"")  # nothing to send: no write
        t.write(bytearray(b"body"))  # a buffer the caller may change after
        t.writelines([b" and", memoryview(b" more")])
        assert real.writes() == [] and t.get_write_buffer_size() == len(b"head body and more")
        await asyncio.sleep(0)
        assert real.writes() == [b"head body and more"]
        await asyncio.sleep(0)  # no second write of the same bytes
        t.write(b"next")
        await asyncio.sleep(0)
        return real.writes()

    assert _run(main) == [b"head body and more", b"next"]


def test_a_buffer_changed_after_it_was_written_is_sent_as_it_was():
    async def main():
        real = RecordingTransport()
        t = _Coalesced(real, asyncio.get_running_loop())
        data = bytearray(b"first")
        t.write(data)
        data[:] = b"XXXXX"
        await asyncio.sleep(0)
        return real.writes()

    assert _run(main) == [b"first"]


@pytest.mark.parametrize("end", ["close", "write_eof"])
def test_close_and_eof_write_what_is_held_first(end):
    async def main():
        real = RecordingTransport()
        t = _Coalesced(real, asyncio.get_running_loop())
        t.write(b"answer")
        getattr(t, end)()
        await asyncio.sleep(0)  # the flush already scheduled finds nothing held
        return real.calls

    assert _run(main) == [("write", b"answer"), ("close",) if end == "close" else ("eof",)]


def test_abort_drops_what_is_held_as_the_transport_drops_its_buffer():
    async def main():
        real = RecordingTransport()
        t = _Coalesced(real, asyncio.get_running_loop())
        t.write(b"never sent")
        t.abort()
        await asyncio.sleep(0)
        return real.calls

    assert _run(main) == [("abort",)]


def test_nothing_is_written_to_a_transport_closed_underneath():
    async def main():
        real = RecordingTransport()
        t = _Coalesced(real, asyncio.get_running_loop())
        t.write(b"late")
        real.closing = True  # the peer went away: the transport closed itself
        await asyncio.sleep(0)
        return real.writes()

    assert _run(main) == []


async def _app(scope, receive, send):
    """A look-up sized answer; /stream answers in three pieces; /slow yields to the loop mid-answer."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = b'{"citizen_id":"c1","score":1000,"class":"A"}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            *([(b"content-length", str(len(body)).encode())] if path != "/stream" else [])]})
    if path == "/stream":
        for piece in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/slow":
        await asyncio.sleep(0.01)
    await send({"type": "http.response.body", "body": body})


def _serve(protocol_class, request: bytes) -> RecordingTransport:
    """Feed `request` to a connection of `protocol_class` and run the loop until it has answered."""
    async def main():
        config = Config(_app, http=protocol_class, loop="asyncio", log_level="warning", access_log=False,
                        server_header=False, date_header=False)
        config.load()
        transport = RecordingTransport()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={},
                                  _loop=asyncio.get_running_loop())
        protocol.connection_made(transport)
        protocol.data_received(request)
        for _ in range(200):
            await asyncio.sleep(0.001)
        protocol.connection_lost(None)
        return transport

    return _run(main)


LOOKUP = b"GET /api/citizens/c1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n"


@pytest.mark.parametrize("request_bytes, answers", [
    (LOOKUP, 1),
    (LOOKUP.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"), 1),
    (b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", 1),
    (b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 1),
    (LOOKUP + LOOKUP + b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 3),  # pipelined
])
def test_the_protocol_sends_the_same_bytes_in_fewer_writes(request_bytes, answers):
    plain, coalesced = _serve(HttpToolsProtocol, request_bytes), _serve(CoalescingHttpTools, request_bytes)
    sent = b"".join(plain.writes())
    assert sent.count(b"HTTP/1.1 200 OK") == answers
    assert b"".join(coalesced.writes()) == sent
    # uvicorn writes a head and a body (or each piece); coalesced, one write per loop turn that
    # wrote: an answer made in one turn is one write, /slow's head and body are two.
    assert len(plain.writes()) >= 2 * answers
    if b"slow" not in request_bytes or answers > 1:
        assert len(coalesced.writes()) < len(plain.writes())
    if answers == 1:
        assert len(coalesced.writes()) == (2 if b"slow" in request_bytes else 1)
    # Whatever closes the connection comes after every byte is written.
    for t in (plain, coalesced):
        closes = [i for i, c in enumerate(t.calls) if c[0] == "close"]
        writes = [i for i, c in enumerate(t.calls) if c[0] == "write"]
        assert not closes or max(writes) < closes[0]
