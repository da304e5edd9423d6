"""The gateway's PostgreSQL listener, and where a CancelRequest is routed.

A client that connects gets a ``ClientConnection`` (its startup, then its relay).
A CancelRequest arrives on a new connection, to any listener of the process: the
(pid, secret) the gateway issued to a client at its startup stands for that
client's upstream connection (``CANCEL_ROUTES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import ssl
from dataclasses import dataclass

from runner.gateway import upstream as upstream_mod
from runner.gateway.model import SCRAM_ITERATIONS, ProxyBackend, ScramVerifier, Session, Upstream
from runner.gateway.proxy.connection import ClientConnection
from runner.gateway.proxy.stream import ClientStream

READ_SIZE = 1 << 18  # client bytes buffered during the startup before the socket pauses


@dataclass(frozen=True)
class ProxyConfig:
    host: str = "127.0.0.1"
    port: int = 0
    # TLS offered to clients when set (answer 'S' to SSLRequest), else 'N'.
    ssl_context: ssl.SSLContext | None = None
    # When True, a client connecting over TLS or from a loopback address is asked
    # for a cleartext password (checked against the session's verifier); every
    # other client, and every client when False, authenticates with SCRAM-SHA-256.
    allow_cleartext_on_loopback: bool = True
    upstream_connect_timeout: float = upstream_mod.CONNECT_TIMEOUT_S
    # What one client can hold: its time to finish the startup (PostgreSQL's
    # authentication_timeout) and, with everyone else, the connections served.
    startup_timeout: float = 60.0
    max_connections: int = 1024


@dataclass(frozen=True)
class CancelTarget:
    upstream: Upstream
    pid: int
    key: int
    session: Session


class CancelRoutes:
    """Gateway-issued (pid, secret) -> the upstream connection it stands for."""

    def __init__(self) -> None:
        self._targets: dict[tuple[int, int], CancelTarget] = {}

    def issue(self, upstream: Upstream, pid: int, key: int, session: Session) -> tuple[int, int]:
        """The (pid, secret) a client gets for its upstream backend (pid, key): the
        server's own pid, so pg_backend_pid(), pg_terminate_backend() and NOTIFY agree
        with what the client was told, and a secret of the gateway's, so a
        CancelRequest reaches the upstream only through this map (the server's key
        never leaves the gateway)."""
        target = CancelTarget(upstream, pid, key, session)
        while True:
            pair = (pid, secrets.randbits(32))
            if pair not in self._targets:
                self._targets[pair] = target
                return pair

    def forget(self, pair: tuple[int, int]) -> None:
        self._targets.pop(pair, None)

    async def cancel(self, pid: int, key: int) -> Session | None:
        """Cancel what the connection (pid, key) stands for runs; its session, or None
        when the pair is not one this process issued."""
        target = self._targets.get((pid, key))
        if target is None:
            return None
        await upstream_mod.cancel(target.upstream, target.pid, target.key)
        return target.session


# One map per process: a CancelRequest arrives on a new connection, to any listener.
CANCEL_ROUTES = CancelRoutes()


class PgProxy:
    """Listens for PostgreSQL clients and relays each to its session's upstream."""

    def __init__(self, backend: ProxyBackend, config: ProxyConfig) -> None:
        self.backend = backend
        self.config = config
        self.port = config.port
        self.cancels = CANCEL_ROUTES
        self._server: asyncio.Server | None = None
        self._connections: set[ClientConnection] = set()
        self._mock_key = secrets.token_bytes(32)
        self._mock_keys = (secrets.token_bytes(32), secrets.token_bytes(32))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientStream(self._handle, READ_SIZE), self.config.host, self.config.port
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every connection (clients get FATAL 57P01)."""
        if self._server is not None:
            self._server.close()
        connections = list(self._connections)
        for conn in connections:
            conn.shutdown()
        tasks = [c.task for c in connections if c.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    def mock_verifier(self, user: str) -> ScramVerifier:
        """A verifier no secret matches, for an unknown user name: the SCRAM exchange
        runs the same way (the salt is stable per name, like a real user's)."""
        salt = hmac.new(self._mock_key, user.encode("utf-8", "replace"), "sha256").digest()[:16]
        return ScramVerifier(salt, SCRAM_ITERATIONS, self._mock_keys[0], self._mock_keys[1])

    async def _handle(self, stream: ClientStream) -> None:
        conn = ClientConnection(self, stream)
        if len(self._connections) >= self.config.max_connections:
            # As PostgreSQL answers max_connections: the client learns why, nothing
            # of it is read, and the sessions already connected are not slowed.
            conn.refuse("53300", "sorry, too many clients already (listen.pg_max_connections)")
            return
        conn.task = asyncio.current_task()
        self._connections.add(conn)
        try:
            await conn.run()
        except asyncio.CancelledError:
            if not conn.stopping:
                raise
            # stop() cancelled it: the connection is closed and accounted for.
        finally:
            self._connections.discard(conn)
