"""The client socket from accept to the end of its startup, with its own buffer.

The startup is a dialogue (SSLRequest, startup packet, authentication), read with
``readexactly``; bytes the client sent beyond what has been read stay in this
protocol's buffer, where the gateway can see them: a client that sends bytes
between its SSLRequest and the TLS handshake is refused (they were not
encrypted), and what a client pipelines behind its authentication is handed to
the relay when it takes the socket over (``take_buffered``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Coroutine
from typing import Any


class ClientStream(asyncio.Protocol):
    """An accepted client connection during its startup (see the module's docstring)."""

    def __init__(
        self, serve: Callable[[ClientStream], Coroutine[Any, Any, None]], limit: int
    ) -> None:
        self._serve = serve
        self._limit = limit  # buffered bytes beyond twice this pause the socket
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # connection_made
        self.task: asyncio.Task[None] | None = None
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._lost = False
        self._tls = False
        self._reading_paused = False
        self._writing_paused = False
        self._data_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    # asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        self.task = loop.create_task(self._serve(self))
        self.task.add_done_callback(self._served)

    def _served(self, task: asyncio.Task[None]) -> None:
        """As asyncio.start_server does: a connection whose handler raised is closed,
        and the exception goes to the loop's handler (the listener goes on)."""
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            task.get_loop().call_exception_handler(
                {
                    "message": "Unhandled exception in the gateway's client connection",
                    "exception": error,
                    "transport": self.transport,
                }
            )
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake_reader()
        if not self._reading_paused and len(self._buffer) > 2 * self._limit:
            with contextlib.suppress(NotImplementedError):
                self.transport.pause_reading()
                self._reading_paused = True

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        # Like asyncio's StreamReaderProtocol: a plain socket stays open for writing
        # (the answer to what was read still goes out); TLS cannot half-close.
        return not self._tls

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        if exc is not None:
            self._error = exc
        self._wake_reader()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # reading ---------------------------------------------------------------------------------

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; asyncio.IncompleteReadError when the client closes
        first, the connection's error when it failed (as StreamReader.readexactly)."""
        buffer = self._buffer
        while len(buffer) < n:
            if self._error is not None:
                raise self._error
            if self._eof:
                partial = bytes(buffer)
                buffer.clear()
                raise asyncio.IncompleteReadError(partial, n)
            waiter = self._data_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._data_waiter = None
        if self._error is not None:
            raise self._error
        data = bytes(buffer[:n])
        del buffer[:n]
        self._maybe_resume_reading()
        return data

    @property
    def buffered(self) -> int:
        """How many bytes the client sent that have not been read yet."""
        return len(self._buffer)

    def at_eof(self) -> bool:
        """The client closed its side and everything it sent has been read."""
        return self._eof and not self._buffer

    def take_buffered(self) -> bytes:
        """Everything sent and not yet read (the relay's from now on)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        self._maybe_resume_reading()
        return data

    def _wake_reader(self) -> None:
        waiter = self._data_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _maybe_resume_reading(self) -> None:
        if self._reading_paused and len(self._buffer) <= self._limit:
            self._reading_paused = False
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self.transport.resume_reading()

    # writing ---------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport takes more (as StreamWriter.drain)."""
        if self._error is not None:
            raise self._error
        if self.transport.is_closing():
            await asyncio.sleep(0)  # let connection_lost run
        if self._lost:
            raise ConnectionResetError("Connection lost")
        if not self._writing_paused:
            return
        waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._drain_waiter = None

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """The TLS handshake as the server side; this protocol reads and writes the
        TLS transport from then on."""
        await self.drain()
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(self.transport, self, context, server_side=True)
        if transport is None:
            raise ConnectionResetError("the client left during the TLS handshake")
        self.transport = transport
        self._tls = True

    def close(self) -> None:
        self.transport.close()

    async def wait_closed(self) -> None:
        if self._closed is not None:
            await self._closed
