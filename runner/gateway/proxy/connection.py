"""One client connection: its startup, then its relay, then its close.

A client connects with ``user`` = a gateway session id and the session secret as
its password (SCRAM-SHA-256 against the session's stored verifier, see
proxy.auth). The connection opens an upstream connection with the credential the
backend names, hands both sockets to its relay (proxy.relay, with the C lane of
proxy.lane when the backend offers one), waits for the relay to end, and records
what is still owed to the audit log and the close.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING, Any

from runner.gateway import upstream as upstream_mod
from runner.gateway import wire
from runner.gateway.dbguard.link import link_for
from runner.gateway.model import Session, utcnow
from runner.gateway.proxy import auth
from runner.gateway.proxy.events import record_event
from runner.gateway.proxy.lane import LaneGlue, open_lane
from runner.gateway.proxy.relay import ClientSide, Relay, UpstreamSide
from runner.gateway.proxy.state import WRITE_HIGH_WATER
from runner.gateway.proxy.stream import ClientStream

if TYPE_CHECKING:
    from runner.gateway.proxy.listener import PgProxy

STARTUP_TIMEOUT_S = 60.0  # PostgreSQL's authentication_timeout default
TERMINATE_GRACE_S = 5.0


class ClientConnection:
    def __init__(self, proxy: PgProxy, stream: ClientStream) -> None:
        self.proxy = proxy
        self.backend = proxy.backend
        self.stream = stream
        self.task: asyncio.Task[Any] | None = None
        self.peer = stream.transport.get_extra_info("peername")
        self.tls = False
        self.session: Session | None = None
        self.up: upstream_mod.UpstreamConnection | None = None
        self.cancel_key: tuple[int, int] | None = None
        self.stopping = False
        self.relay: Relay | None = None  # once the startup is done

    def shutdown(self) -> None:
        self.stopping = True
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            try:
                started = await asyncio.wait_for(self._startup(), self.proxy.config.startup_timeout)
            except (TimeoutError, wire.ProtocolError) as exc:
                code = "08P01" if isinstance(exc, wire.ProtocolError) else "08006"
                text = str(exc) if isinstance(exc, wire.ProtocolError) else "startup timed out"
                self._send_fatal(code, text)
                return
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                return
            if started:
                await self._relay()
        except asyncio.CancelledError:
            if self.stopping:
                relay = self.relay
                if relay is not None and relay.lane is not None:
                    relay.lane.end()
                self._send_fatal("57P01", "terminating connection due to gateway shutdown")
                if self.up is not None and relay is not None and relay.pending:
                    await self.up.cancel(timeout=1.0)
                await self._finish("gateway-shutdown")
            raise
        finally:
            await self._close_client()
            if self.cancel_key is not None:
                self.proxy.cancels.forget(self.cancel_key)
            if self.up is not None:
                self.up.abort()

    def refuse(self, code: str, text: str) -> None:
        """Answer FATAL ``code`` and close, before anything of the client is read."""
        self._send_fatal(code, text)
        self.stream.transport.close()

    def _send_fatal(self, code: str, text: str, detail: str | None = None) -> None:
        transport = self.stream.transport
        if not transport.is_closing():
            transport.write(wire.error_response(code, text, severity="FATAL", detail=detail))

    async def _close_client(self) -> None:
        relay = self.relay
        if relay is not None:
            transport = relay.ct
            if not transport.is_closing():
                transport.close()  # after what is buffered has been written
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(relay.client_closed), 2)
            if not relay.client_closed.done():
                transport.abort()
            return
        stream = self.stream
        with contextlib.suppress(Exception):
            if not stream.transport.is_closing():
                await asyncio.wait_for(stream.drain(), 2)
                stream.close()
            await asyncio.wait_for(stream.wait_closed(), 2)
        if not stream.transport.is_closing():
            stream.transport.abort()

    async def _event(self, session: Session | None, event: str, **data: Any) -> None:
        await record_event(self.backend, session, event, **data)

    # -- startup and authentication -------------------------------------------------------------

    async def _startup(self) -> bool:
        stream = self.stream
        while True:
            packet = await wire.read_startup(stream)
            if packet.kind == "ssl":
                context = self.proxy.config.ssl_context
                if self.tls or context is None:
                    stream.write(b"N")
                    continue
                # Bytes sent after the SSLRequest but before the handshake were
                # not encrypted (CVE-2021-23214): refuse them.
                if stream.buffered:
                    raise wire.ProtocolError("received unencrypted data after SSL request")
                stream.write(b"S")
                await stream.drain()
                await stream.start_tls(context)
                self.tls = True
                continue
            if packet.kind == "gssenc":
                stream.write(b"N")
                continue
            if packet.kind == "cancel":
                await self._cancel_request(packet.pid, packet.key)
                return False
            break
        if packet.major != 3:
            self._send_fatal(
                "0A000",
                f"unsupported frontend protocol {packet.major}.{packet.minor}: "
                "server supports 3.0 to 3.0",
            )
            return False
        params = dict(packet.parameters)
        user = params.get("user", "")
        if not user:
            self._send_fatal("28000", "no PostgreSQL user name specified in startup packet")
            return False
        out: list[bytes] = []
        unsupported = [name for name in params if name.startswith("_pq_.")]
        if packet.minor > 0 or unsupported:
            out.append(wire.negotiate_protocol_version(wire.PROTOCOL_3_0, unsupported))
        session = await self.backend.session(user)
        verifier = session.verifier if session is not None else self.proxy.mock_verifier(user)
        cleartext = self.proxy.config.allow_cleartext_on_loopback and (
            self.tls or auth.loopback(self.peer)
        )
        if cleartext:
            server_final = await auth.auth_cleartext(stream, verifier, out)
        else:
            server_final = await auth.auth_scram(stream, verifier, out)
        if server_final is None or session is None:
            await self._event(
                session,
                "auth-failed",
                user=user,
                reason="unknown session" if session is None else "wrong secret",
            )
            self._send_fatal("28P01", f'password authentication failed for user "{user}"')
            return False
        self.session = session
        why = session.usable(utcnow())
        if why is not None:
            await self._event(session, "auth-failed", reason=why)
            self._send_fatal("28000", why)
            return False
        database = params.get("database") or user
        if database != session.database:
            await self._event(session, "auth-failed", reason="wrong database", database=database)
            self._send_fatal(
                "3D000",
                f'database "{database}" does not exist for this session',
                detail=f'session {session.id} is for database "{session.database}"',
            )
            return False
        forwarded, refused = auth.forwarded_parameters(params)
        if refused:
            await self._event(
                session, "auth-failed", reason="startup parameter refused", name=refused
            )
            self._send_fatal(
                "42501", f'startup parameter "{refused}" is not allowed through the gateway'
            )
            return False
        target = self.backend.upstream(session)
        try:
            up = await upstream_mod.connect(
                target, parameters=forwarded, timeout=self.proxy.config.upstream_connect_timeout
            )
        except upstream_mod.UpstreamError as exc:
            await self._event(session, "upstream-failed", error=str(exc), sqlstate=exc.sqlstate)
            self._send_fatal(
                "08001",
                "the gateway could not connect to the database",
                detail=f"upstream SQLSTATE {exc.sqlstate}" if exc.sqlstate else None,
            )
            return False
        self.up = up
        self.cancel_key = self.proxy.cancels.issue(target, up.pid, up.key, session)
        if server_final:
            out.append(wire.authentication_sasl_final(server_final))
        out.append(wire.authentication_ok())
        out.extend(up.parameter_messages)
        out.extend(up.notice_messages)
        out.append(wire.backend_key_data(*self.cancel_key))
        out.append(wire.ready_for_query(up.transaction_status))
        stream.write(b"".join(out))
        await stream.drain()
        await self._event(
            session,
            "authenticated",
            peer=str(self.peer[0]) if self.peer else None,
            tls=self.tls,
            database=database,
            application_name=params.get("application_name"),
            method="password" if cleartext else "SCRAM-SHA-256",
        )
        return True

    async def _cancel_request(self, pid: int, key: int) -> None:
        session = await self.proxy.cancels.cancel(pid, key)
        if session is not None:  # like PostgreSQL: no answer, whatever happened
            await self._event(session, "cancel", pid=pid)

    # -- the relay -------------------------------------------------------------------------------

    def _new_relay(self) -> tuple[Relay, LaneGlue | None]:
        """The relay over both sockets (and its lane's glue), the sockets' protocols
        switched to it."""
        up, session = self.up, self.session
        assert up is not None and session is not None
        codec = wire.python_codec(up.parameters.get("client_encoding", "UTF8"))
        client: asyncio.Transport = self.stream.transport
        upstream: asyncio.Transport = up.writer.transport  # type: ignore[assignment]
        relay = self.relay = Relay(
            self.backend,
            session,
            client,
            upstream,
            up.transaction_status[0],
            "utf-8" if codec in (None, "ascii") else codec,
            up.parameters.get("standard_conforming_strings", "on") == "on",
        )
        # The database's guard, when the gateway marks for it (runner.gateway.dbguard).
        relay.guard = link_for(self.backend, session.database, up.pid)
        glue = open_lane(relay, self.backend, session)
        lane = None if glue is None else glue.lane
        client.set_protocol(ClientSide(relay, lane))
        upstream.set_protocol(UpstreamSide(relay, lane))
        return relay, glue

    async def _relay(self) -> None:
        assert self.up is not None
        stream, up = self.stream, self.up
        client_at_eof = stream.at_eof()  # before its buffer is taken, as the reader says
        upstream_at_eof = up.reader.at_eof()
        relay, glue = self._new_relay()
        # What each side sent beyond what the startup read: the relay's, before anything
        # the new protocols get (the lane joins after: it takes nothing half-read).
        client_early = stream.take_buffered()
        upstream_early = await _drain_reader(up.reader)
        for transport in (relay.ct, relay.ut):
            with contextlib.suppress(Exception):
                transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if upstream_early:
            relay.upstream_data(upstream_early)
        if client_early:
            relay.feed(client_early)
        if glue is not None:
            relay.attach_lane(glue)
        # A side that closed before the switch told its old protocol, not the new one.
        if upstream_at_eof or up.writer.transport.is_closing():
            relay.upstream_lost()
        if client_at_eof or relay.ct.is_closing():
            relay.client_closed.set_result(None)
            relay.client_lost()
        for transport in (relay.ct, relay.ut):
            with contextlib.suppress(Exception):
                if not transport.is_reading():
                    transport.resume_reading()
        await asyncio.shield(relay.ended)
        reason = relay.end_reason or "closed"
        if reason.startswith("error: "):  # a bug: end this connection, not the listener
            self._send_fatal("XX000", "internal error in the gateway; the connection is closed")
        if reason.startswith("client-protocol"):
            self._send_fatal("08P01", reason.partition(": ")[2] or "protocol violation")
        if reason == "terminated":
            # The server answers whatever was pipelined before the Terminate,
            # then closes: let those outcomes arrive.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(relay.upstream_closed), TERMINATE_GRACE_S)
            reason = "closed"
        elif reason == "client-lost" or reason.startswith("client-protocol"):
            # What is in flight stays "connection-lost": stop reading the upstream
            # (its answer to the cancel below is not the statement's outcome).
            relay.detached = True
            with contextlib.suppress(Exception):
                relay.ut.pause_reading()
            if relay.pending and not relay.upstream_closed.done():
                # A backend busy in a long statement would not notice the closed
                # socket until it next writes: cancel it first.
                await up.cancel(timeout=2.0)
        elif reason == "upstream-lost":
            self._send_fatal("08006", "the gateway lost its connection to the database")
        elif reason.startswith("protocol"):
            self._send_fatal("08P01", "the gateway lost protocol sync with the database")
        if not relay.ut.is_closing():
            with contextlib.suppress(Exception):
                relay.ut.write(wire.terminate())
            relay.ut.close()
        await self._finish(reason)

    async def _finish(self, reason: str) -> None:
        """Record what is still owed to the audit log, then the close."""
        session = self.session
        if session is None:
            return
        relay = self.relay
        if relay is not None:
            lane = relay.lane
            if lane is not None:
                lane.end()
            if relay.hold is not None or (lane is not None and lane.holding):
                # a statement still waiting for its record: its
                # entries are written whatever happens, and get their outcome (not-run)
                relay.hold_done = asyncio.get_running_loop().create_future()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(relay.hold_done), STARTUP_TIMEOUT_S)
            if relay.background:
                await asyncio.gather(*relay.background, return_exceptions=True)
            relay.submit_outcomes(relay.owed_at_close())
            relay.session = None  # once: nothing more is submitted for this connection
            if relay.guard is not None:
                await relay.guard.close()
        self.session = None  # once
        lost = reason != "closed"
        await self._event(session, "closed", reason=reason if lost else "client terminated")


async def _drain_reader(reader: asyncio.StreamReader) -> bytes:
    """What the upstream sent beyond its startup, from the StreamReader the startup
    read it with (its socket is the relay's protocol's already, so nothing more
    arrives there): marking its end makes read() return what it holds without
    waiting."""
    reader.feed_eof()
    try:
        return await reader.read()
    except Exception:  # the connection failed: the transport says so to the relay
        return b""
