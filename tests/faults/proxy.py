"""A TCP proxy on 127.0.0.1 in front of a real server that a test can stall, reset or refuse.

- ``pause()``: the link stalls. Connections (old and new) are accepted and bytes are taken
  into the kernel's buffers, but nothing is forwarded either way: TCP stays alive, which is
  exactly what neither keepalives nor server-side timeouts can see.
- ``resume()``: what was held is forwarded and the link works again.
- ``reset()``: every open connection is closed with a TCP RST (as after a server crash).
- ``refuse()`` / ``accept()``: stop listening (connects are refused), and listen again.

The proxy runs its own event loop in a daemon thread; every method is called from the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any


class StallProxy:
    """``127.0.0.1:<port>`` forwarding to ``upstream`` until told otherwise."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    def start(self) -> StallProxy:
        """Listen on a free port (``self.port``)."""
        self._thread.start()
        self._call(self._start())
        return self

    def pause(self) -> None:
        """Stall the link: accept bytes, forward nothing."""
        self.loop.call_soon_threadsafe(self._event().clear)

    def resume(self) -> None:
        """Forward again (held bytes first)."""
        self.loop.call_soon_threadsafe(self._event().set)

    def reset(self) -> int:
        """Close every open connection with an RST; returns how many sockets were reset."""
        return int(self._call(self._reset()))

    def refuse(self) -> None:
        """Stop listening and reset what is open: connects are refused."""
        self._call(self._stop_listening())
        self.reset()

    def accept(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    def close(self) -> None:
        """Stop everything and the loop's thread."""
        with contextlib.suppress(Exception):
            self.refuse()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

    # --- inside the loop ---------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the proxy's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def _event(self) -> asyncio.Event:
        """The 'link flows' flag (created inside the loop)."""
        assert self._flowing is not None
        return self._flowing

    async def _start(self) -> None:
        """Create the flag and listen."""
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        """Listen on ``self.port`` (a free one the first time)."""
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        """Close the listening socket."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _reset(self) -> int:
        """Abort every link with SO_LINGER 0 (the kernel sends RST)."""
        count = 0
        for writer in list(self._links):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            count += 1
        self._links.clear()
        return count

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        """One client: connect upstream once the link flows, then pump both ways."""
        self._links.add(client_w)
        try:
            await self._event().wait()
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            self._links.discard(client_w)
            return
        self._links.add(server_w)
        await asyncio.gather(
            self._pump(client_r, server_w), self._pump(server_r, client_w), return_exceptions=True
        )
        for writer in (client_w, server_w):
            self._links.discard(writer)
            writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer`` while the link flows; hold the bytes while stalled."""
        try:
            while True:
                await self._event().wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self._event().wait()  # read just before a pause: held, not forwarded
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.write_eof()
