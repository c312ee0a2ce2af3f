"""A TCP relay in front of the object store, for faults the store itself cannot be asked for:
uploads slowed to a crawl (so a node can be killed in the middle of one), with each PUT it
carries watched (its key, its length, how much of it went through).

It runs its own event loop in a thread: the test's loop blocks at times (a node process's start
polls its health synchronously), and the node talks to the store through this relay meanwhile."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from dataclasses import dataclass

CHUNK = 4096
RECEIVE_BUFFER = 8192
_PUT = re.compile(rb"PUT (/[^ ?]+)[^ ]* HTTP/1\.1\r\n")
_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)\r\n", re.IGNORECASE)


@dataclass
class Put:
    """One PUT request seen going to the store: its path, its body's length, bytes forwarded
    after its headers."""

    path: str
    length: int
    sent: int = 0


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rate: float | None = None  # bytes a second towards the store; None: as fast as any
        self.puts: list[Put] = []
        self.open_connections = 0
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            listener = socket.socket()
            # A small window: what the node has sent is mostly still in the node, not queued
            # in this relay's kernel buffers, so killing the node really cuts the upload.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            listener.bind(("127.0.0.1", 0))
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, sock=listener))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="tcp-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("the relay did not start within 10 s")

    def cut(self) -> None:
        """Every connection dropped at once (RST), what is buffered in the relay lost: the
        network path dying with a node's host, so a killed node's upload really ends short."""
        def abort() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(abort)

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        try:
            store_r, store_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self.open_connections -= 1
            client_w.close()
            return
        self._writers.update((client_w, store_w))
        try:
            await asyncio.gather(self._upstream(client_r, store_w),
                                 self._pipe(store_r, client_w), return_exceptions=True)
        finally:
            self.open_connections -= 1
            for w in (client_w, store_w):
                self._writers.discard(w)
                w.close()

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Towards the store: throttled, and each PUT's progress counted."""
        current: Put | None = None
        while data := await reader.read(CHUNK):
            match = _PUT.search(data)
            if match is not None:
                length = _LENGTH.search(data)
                current = Put(match[1].decode(), int(length[1]) if length else -1)
                self.puts.append(current)
                body = data[data.find(b"\r\n\r\n", match.end() - 2) + 4:]
                current.sent += len(body)
            elif current is not None:
                current.sent += len(data)
            writer.write(data)
            await writer.drain()
            if self.rate:
                await asyncio.sleep(len(data) / self.rate)  # the throttle itself
        writer.close()  # the node hung up (or was killed): so does the store's side

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        writer.close()
