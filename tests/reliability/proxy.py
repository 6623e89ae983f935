"""A TCP proxy the tests can cut: how an outage of PostgreSQL or Redis is simulated without
touching the machine's shared servers.

Amends is pointed at the proxy's port. `cut()` closes the listening socket (new connections
are refused, as by a stopped server) and aborts every open connection (as by a crash);
`restore()` listens again on the same port. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any

from tests.services import free_port

CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, name: str, target_host: str, target_port: int, port: int | None = None):
        self.name = name
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.connections_total = 0
        self.connections_dropped = 0
        self.refusing_since: float | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{name}", daemon=True)
        self._thread.start()
        self.restore()

    @property
    def up(self) -> bool:
        return self._server is not None

    def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        self._call(self._cut())
        self.refusing_since = time.monotonic()

    def restore(self) -> None:
        self._call(self._listen())
        self.refusing_since = None

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self._loop.is_closed():  # a timer restoring a proxy the test has closed already
            coroutine.close()
            return
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        # The port was just released by a cut: retry briefly while the kernel lets go of it.
        for attempt in range(50):
            try:
                self._server = await asyncio.start_server(
                    self._handle, "127.0.0.1", self.port, reuse_address=True
                )
                return
            except OSError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            # abort() resets the connection at once, like a server that went away.
            writer.transport.abort()
            self.connections_dropped += 1
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        self.connections_total += 1
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
