"""A lean WebSocket client for load generation: thousands of sockets that mostly listen.

The `websockets` library costs the load generator tens of microseconds per received message (streams,
a task per connection, a generator-based frame parser). At 5,000 sockets on the same 2-core machine as
the server, that CPU is taken from the server and shows up as delay. This client is a plain asyncio
Protocol: it parses the server's unmasked frames by hand and hands each text message, with the time
its bytes arrived, to a callback. It sends (masked) text frames and answers pings; nothing else.
"""
from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit

OnText = Callable[[str, float], None]


class LeanSocket(asyncio.Protocol):
    def __init__(self, on_text: OnText) -> None:
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshake: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.upgraded = False

    # ---- asyncio.Protocol ----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = int(self.buffer[:end].split(b" ", 2)[1])
            del self.buffer[: end + 4]
            if status != 101:
                self._finish(f"HTTP {status}")
                self.handshake.set_result(status)
                self.transport.close()
                return
            self.upgraded = True
            self.handshake.set_result(101)
        self._frames(now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError(str(exc or "closed during handshake")))
        self._finish(f"connection lost: {exc}" if exc else "connection closed")

    # ---- frames ----
    def _frames(self, now: float) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
            start = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, start = struct.unpack_from("!H", buf, 2)[0], 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, start = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < start + length:
                return
            payload = bytes(buf[start:start + length])
            del buf[: start + length]
            if opcode == 0x1:
                self.on_text(payload.decode(), now)
            elif opcode == 0x9:  # ping → pong
                self._send_frame(0xA, payload)
            elif opcode == 0x8:  # close
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                self._send_frame(0x8, payload[:2])
                self.transport.close()
                self._finish(f"closed by server ({code})")
                return

    def send_text(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send_frame(0x8, struct.pack("!H", 1000))
            self.transport.close()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(head + mask + masked)

    def _finish(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)


async def connect(url: str, on_text: OnText, timeout: float = 60.0) -> LeanSocket:
    """Open ws://host:port/path?query; raises ConnectionError if the server does not answer 101."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, sock = await asyncio.wait_for(
        loop.create_connection(lambda: LeanSocket(on_text), parts.hostname, parts.port or 80), timeout)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    sock.transport.write(
        f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    status = await asyncio.wait_for(sock.handshake, timeout)
    if status != 101:
        raise ConnectionError(f"handshake refused: HTTP {status}")
    return sock


async def open_all(watchers: list, url: str, event_id: int, parallel: int) -> float:
    """Open every watcher (anything with `async open(url, event_id)`), `parallel` at a time, and return
    how many seconds it took."""
    gate = asyncio.Semaphore(parallel)

    async def open_one(watcher) -> None:
        async with gate:
            await watcher.open(url, event_id)

    started = time.perf_counter()
    await asyncio.gather(*(open_one(w) for w in watchers))
    return time.perf_counter() - started
