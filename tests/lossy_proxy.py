"""A network fault for tests: the test database behind a TCP proxy that can lose one answer.

Armed, the proxy breaks the connection whose client next sends a statement containing `marker` (by
default a category batch's write, `write_category_batch`), instead of passing the database's answer on.
When that statement is its own transaction, PostgreSQL has done the work by then, so the client cannot
tell the break from one before the work: exactly the case where a retry must find out what happened
instead of doing it again. Given `delay_s`, it holds that answer back for a while instead (a slow write).
"""
from __future__ import annotations

import asyncio
import threading

from sqlalchemy.engine import make_url

from storage.database import normalise_url


class LossyProxy:
    def __init__(self, database_url: str, marker: bytes = b"write_category_batch", delay_s: float | None = None) -> None:
        """`delay_s`: hold the database's answer back that long, then pass it on, instead of losing it."""
        self.marker = marker
        self.delay_s = delay_s
        url = make_url(normalise_url(database_url))
        host = url.query.get("host") or url.host or "localhost"
        port = url.port or 5432
        # pgserver's URLs name a socket folder (`?host=/path`); others a TCP host
        self._target = (f"{host}/.s.PGSQL.{port}", None) if host.startswith("/") else (host, port)
        self.armed = False
        self.broken = 0  # answers lost so far
        self.delayed = 0  # answers held back so far
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True, name="lossy-proxy").start()
        assert ready.wait(10), "the proxy did not start"
        query = {k: v for k, v in url.query.items() if k != "host"}
        self.url = url.set(host="127.0.0.1", port=self._port, query=query).render_as_string(hide_password=False)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        path, port = self._target
        if port is None:
            server_reader, server_writer = await asyncio.open_unix_connection(path)
        else:
            server_reader, server_writer = await asyncio.open_connection(path, port)
        doomed = asyncio.Event()

        async def upstream() -> None:
            while data := await client_reader.read(65536):
                if self.armed and self.marker in data:
                    self.armed = False
                    doomed.set()  # before the database can answer
                server_writer.write(data)
                await server_writer.drain()

        async def downstream() -> None:
            while data := await server_reader.read(65536):
                if doomed.is_set() and self.delay_s is not None:
                    doomed.clear()
                    self.delayed += 1
                    await asyncio.sleep(self.delay_s)
                elif doomed.is_set():
                    self.broken += 1
                    break
                client_writer.write(data)
                await client_writer.drain()

        try:
            await asyncio.wait([asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            client_writer.close()
            server_writer.close()
