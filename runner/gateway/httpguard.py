"""Bounds on what one HTTP client can hold: time to send its headers, time to send
its body, and how many connections the API serves at once.

uvicorn's h11 protocol starts its keep-alive timer only after a response, and
cancels it at the first byte of the next request: a client that opens a
connection and sends half a request line, or a byte of headers every few
seconds, holds the connection forever (the slowloris pattern). The protocol
below closes such a connection once ``header_timeout`` has passed without a
whole request head; the middleware ends a body that takes longer than
``body_timeout`` with 408. The connection cap is uvicorn's ``limit_concurrency``
(503 beyond it).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = 10.0  # set per server by guarded_protocol()
    _header_deadline: asyncio.TimerHandle | None = None
    _waiting_since_cycle: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()  # the next request's head has the same bound

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        self._waiting_since_cycle = self.cycle
        self._header_deadline = self.loop.call_later(self.header_timeout, self._header_expired)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_expired(self) -> None:
        self._header_deadline = None
        # Still the cycle we started waiting after: no new request head arrived.
        if self.cycle is self._waiting_since_cycle and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout: float) -> type[GuardedH11Protocol]:
    """A protocol class with this server's header timeout (uvicorn takes a class)."""
    return type("GatewayH11Protocol", (GuardedH11Protocol,), {"header_timeout": header_timeout})


MAX_BODY = 32 * 1024 * 1024  # a plan of tens of thousands of statements fits


class BodyTimeout:
    """ASGI middleware: the request body is read whole, here, before the app sees
    it; one not received within ``timeout`` seconds of its head is answered 408,
    one larger than ``max_body`` 413, and the connection closed."""

    def __init__(self, app: Any, timeout: float, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.timeout = timeout
        self.max_body = max_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(
                    receive(), timeout=max(deadline - time.monotonic(), 0.001)
                )
            except TimeoutError:
                await _refuse(send, 408, "request-timeout", "the request body took too long")
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _refuse(
                    send, 413, "too-large", f"the request body is over {self.max_body} bytes"
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Any:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)


async def _refuse(send: Any, status: int, error: str, detail: str) -> None:
    body = (f'{{"error":"{error}","detail":"{detail}"}}').encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
