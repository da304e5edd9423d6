"""The gateway's own connection to the database refuses bytes a server (or anyone
on the path) sent after its 'S' answer to the SSLRequest and before the TLS
handshake: they were not encrypted (CVE-2021-23222)."""

from __future__ import annotations

import asyncio

import pytest

from runner.gateway.model import Upstream
from runner.gateway.upstream import UpstreamError, connect


async def fake_server(answer: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(8)  # the SSLRequest
        writer.write(answer)  # 'S' and whatever follows it, in one write
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SR\x00\x00\x00\x08\x00\x00\x00\x00", "unencrypted data after its SSL answer"),
        (b"X", "invalid answer to the SSL request"),
    ],
)
def test_bytes_before_the_handshake_are_refused(answer: bytes, message: str) -> None:
    async def run() -> None:
        server, port = await fake_server(answer)
        async with server:
            upstream = Upstream("127.0.0.1", port, "db", "u", "pw", sslmode="require")
            with pytest.raises(UpstreamError, match=message):
                await connect(upstream, timeout=5)

    asyncio.run(run())
