"""The gateway's PostgreSQL listener: protocol 3.0 in front, the held credential behind.

A client connects with ``user`` = a gateway session id and the session secret
as its password (SCRAM-SHA-256 against the session's stored verifier). The
proxy opens an upstream connection with the credential the backend names,
then relays the protocol both ways, asking the backend to decide on every
statement before it is forwarded and recording each one, and its outcome, in
the audit log.

Relay rules, in short:

* client -> upstream: every message is parsed (type + length). A simple Query
  and a Parse are decided; an Execute of an allowed statement is recorded
  (awaited: durable before anything is forwarded). A blocked statement is never
  forwarded: a text that fails at parse time upstream ("SIGNOFF BLOCKED") goes
  in its place, so the server's state (failed transaction block, extended
  protocol skip-until-Sync) is exactly what a real error makes it, and the
  server's error for it is replaced by the gateway's own (SQLSTATE 42501).
* upstream -> client: bytes are forwarded untouched, in large writes; only the
  message headers are read, and the bodies of CommandComplete, ErrorResponse,
  ReadyForQuery and ParameterStatus. A FIFO of what each forwarded message
  expects back lines responses up with statements, pipelined or not.

Also:

* Authentication: SCRAM-SHA-256 against the stored verifier (an unknown session
  runs the same exchange against a mock verifier, so the flow and the error are
  the same); with ``allow_cleartext_on_loopback`` a client on TLS or loopback is
  asked for the secret in cleartext instead (checked against the verifier).
* A statement approved at its Parse (a grant was consumed) runs once, however
  often it is bound and executed.
* The fast-path FunctionCall message is refused (it carries no SQL to decide).
* Startup parameters pass to the upstream only from an allowlist of
  presentation and per-session limit settings (``options`` too); anything else,
  ``replication`` included, is refused.
* A client that disconnects mid-statement gets its upstream statement cancelled
  (a busy backend would not notice the closed socket) and the outcome
  ``connection-lost``.
* The steady state (a simple Query whose literal mask the session already
  allowed as a plain read, or the extended protocol's one-shot Parse, Bind,
  Describe, Execute, Sync of such a text, answered without an error or a notice)
  runs in C, in the connection's fast lane (runner/_lane.c), when the backend
  offers one: the same entries, written and awaited the same way. The lane decides
  a message from its caches only while this relay is quiescent (``_quiet``); a
  one-statement Query this relay decided itself is given to the lane to carry
  (``_lane_carries``). It hands anything else over (``_lane_adopt``,
  ``_lane_unhold``, ``_lane_resume``) before this relay sees a byte that follows it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import secrets
import ssl
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runner.gateway import upstream as upstream_mod
from runner.gateway import wire
from runner.gateway.model import (
    SCRAM_ITERATIONS,
    AuditDecision,
    Outcome,
    ProxyBackend,
    ScramVerifier,
    Session,
    StatementDecision,
    Upstream,
    utcnow,
)
from runner.plan.model import sha256_hex
from runner.speedups import native as _native

READ_SIZE = 1 << 18
STARTUP_TIMEOUT_S = 60.0  # PostgreSQL's authentication_timeout default
TERMINATE_GRACE_S = 5.0
BLOCKED_SQL = "SIGNOFF BLOCKED"  # fails in the upstream's raw parser, before anything runs
SQLSTATE_BLOCKED = "42501"
_MAX_CLIENT_MESSAGE = wire.MAX_MESSAGE_LENGTH
_AUTH_MESSAGE_MAX = 1 << 16

_U32 = struct.Struct("!I")
_IDLE = ord("I")
_BLOCKED = AuditDecision.BLOCKED
_ALLOWED = AuditDecision.ALLOWED
_DATA_ROW = wire.DATA_ROW
_ROW_DESCRIPTION = wire.ROW_DESCRIPTION
_COMMAND_COMPLETE = wire.COMMAND_COMPLETE
_READY_FOR_QUERY = wire.READY_FOR_QUERY
_ERROR_RESPONSE = wire.ERROR_RESPONSE
# Upstream messages whose body the relay reads (all small); the others pass through.
_NEED_BODY = frozenset(
    {_COMMAND_COMPLETE, _READY_FOR_QUERY, _ERROR_RESPONSE, wire.PARAMETER_STATUS}
)

WRITE_HIGH_WATER = 1 << 20  # bytes buffered for a slow peer before the other side pauses
CLIENT_BACKLOG_MAX = 1 << 20  # client bytes queued for the connection task before pausing
_BACKLOG = 1  # why client reading is paused: backlog while a statement is recorded ...
_UPSTREAM_FULL = 2  # ... or the upstream is not taking bytes fast enough

# Startup parameters (and ``options`` settings) a client may pass on to the
# upstream: presentation and per-session limits, nothing that changes who runs
# what. Anything else is refused rather than silently dropped.
_ALLOWED_SETTINGS = frozenset(
    {
        "application_name",
        "client_encoding",
        "datestyle",
        "timezone",
        "intervalstyle",
        "extra_float_digits",
        "search_path",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
        "client_min_messages",
        "bytea_output",
        "standard_conforming_strings",
        "default_transaction_isolation",
        "default_transaction_read_only",
        "default_transaction_deferrable",
        "jit",
        "work_mem",
        "maintenance_work_mem",
        "geqo",
    }
)


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


@dataclass(frozen=True)
class _CancelTarget:
    upstream: Upstream
    pid: int
    key: int
    session: Session


# Gateway-issued (pid, secret) -> the upstream connection it stands for. One map
# per process: a CancelRequest arrives on a new connection, to any listener.
_CANCEL_TARGETS: dict[tuple[int, int], _CancelTarget] = {}


def _issue_cancel_key(target: _CancelTarget) -> tuple[int, int]:
    while True:
        pair = (secrets.randbelow(2**31 - 2) + 1, secrets.randbits(32))
        if pair not in _CANCEL_TARGETS:
            _CANCEL_TARGETS[pair] = target
            return pair


class PgProxy:
    """Listens for PostgreSQL clients and relays each to its session's upstream."""

    def __init__(self, backend: ProxyBackend, config: ProxyConfig) -> None:
        self.backend = backend
        self.config = config
        self.port = config.port
        self._server: asyncio.Server | None = None
        self._connections: set[_ClientConnection] = set()
        self._mock_key = secrets.token_bytes(32)
        self._mock_keys = (secrets.token_bytes(32), secrets.token_bytes(32))

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.config.host, self.config.port, limit=READ_SIZE
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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _ClientConnection(self, reader, writer)
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


# -- SCRAM-SHA-256, server side ------------------------------------------------------------
#
# scramp's ScramServer refuses a client-first-message with an empty user name
# ("n=,"), which is what libpq sends (PostgreSQL takes the user from the startup
# packet). The server side is a few lines of RFC 5802 / RFC 7677 over the stored
# verifier, so it is done here; the client side (upstream.py) uses scramp.


class _ScramFailed(Exception):
    pass


class _ScramExchange:
    def __init__(self, verifier: ScramVerifier) -> None:
        self.verifier = verifier
        self.gs2_header = ""
        self.client_first_bare = ""
        self.server_first = ""
        self.nonce = ""

    def first(self, message: bytes) -> bytes:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise _ScramFailed("client-first-message is not UTF-8") from None
        flag = text[:1]
        if flag not in ("n", "y"):  # 'p': channel binding, which is not offered
            raise _ScramFailed("unsupported channel binding flag")
        first_comma = text.find(",")
        second_comma = text.find(",", first_comma + 1)
        if first_comma != 1 or second_comma != 2:  # no authzid
            raise _ScramFailed("malformed gs2 header")
        self.gs2_header = text[: second_comma + 1]
        bare = text[second_comma + 1 :]
        parts = bare.split(",")
        if len(parts) < 2 or not parts[0].startswith("n=") or not parts[1].startswith("r="):
            raise _ScramFailed("malformed client-first-message")
        client_nonce = parts[1][2:]
        if not client_nonce or any(c < "!" or c > "~" for c in client_nonce):
            raise _ScramFailed("invalid client nonce")
        self.client_first_bare = bare
        self.nonce = client_nonce + base64.b64encode(secrets.token_bytes(18)).decode("ascii")
        salt = base64.b64encode(self.verifier.salt).decode("ascii")
        self.server_first = f"r={self.nonce},s={salt},i={self.verifier.iterations}"
        return self.server_first.encode("ascii")

    def final(self, message: bytes) -> bytes:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise _ScramFailed("client-final-message is not UTF-8") from None
        cut = text.rfind(",p=")
        if cut < 0:
            raise _ScramFailed("client-final-message has no proof")
        without_proof = text[:cut]
        try:
            proof = base64.b64decode(text[cut + 3 :], validate=True)
        except ValueError:
            raise _ScramFailed("invalid proof encoding") from None
        attributes = without_proof.split(",")
        expected_binding = "c=" + base64.b64encode(self.gs2_header.encode("utf-8")).decode("ascii")
        if len(attributes) < 2 or attributes[0] != expected_binding:
            raise _ScramFailed("channel binding does not match")
        if attributes[1] != "r=" + self.nonce:
            raise _ScramFailed("nonce does not match")
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        stored_key = self.verifier.stored_key
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        if len(proof) != len(signature):
            raise _ScramFailed("invalid proof length")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key):
            raise _ScramFailed("proof does not verify")
        server_signature = hmac.new(self.verifier.server_key, auth_message, "sha256").digest()
        return b"v=" + base64.b64encode(server_signature)


# -- what each forwarded message expects back -------------------------------------------------

K_QUERY, K_PARSE, K_BIND, K_DESCRIBE, K_EXECUTE, K_CLOSE, K_SYNC = range(7)
_NO_SEQS: list[int] = []

# A message that must be recorded before it is forwarded: its statements'
# decisions, and what to forward once their entries are durable (given their
# seqs, or None when the audit log failed; returning None forwards the message).
_Recording = tuple[Sequence[StatementDecision], Callable[[list[int] | None], bytes | None]]


class _Prepared:
    """A prepared statement as the proxy knows it."""

    __slots__ = ("approved", "blocked", "decisions", "runs")

    def __init__(self, decisions: list[StatementDecision], blocked: bool) -> None:
        self.decisions = decisions
        self.blocked = blocked
        # A grant covers one run: a statement approved at its Parse runs once,
        # however many times it is bound and executed.
        self.approved = any(d.decision is AuditDecision.APPROVED for d in decisions)
        self.runs = 0


class _Portal(_Prepared):
    """A bound portal: its statement, and whether it has started running (an
    Execute after PortalSuspended continues the same run)."""

    __slots__ = ("ran", "statement")

    def __init__(self, statement: _Prepared) -> None:
        super().__init__(statement.decisions, statement.blocked)
        self.statement = statement
        self.ran = False


class _Pending:
    """What one forwarded message expects back. The defaults live on the class:
    an entry sets the two or three fields its kind uses (one is made per message)."""

    seqs: list[int] = _NO_SEQS  # statement entries recorded for it
    decisions: Sequence[StatementDecision] = ()
    blocked_error: bytes | None = None  # the gateway's error to send instead of upstream's
    t0 = 0.0
    results: list[Outcome] = _NO_SEQS  # type: ignore[assignment]  # K_QUERY: its own list
    name = b""
    info: _Prepared | None = None
    prev: _Prepared | None = None
    copy_ends = 0
    copy_in = False
    target = 0

    def __init__(self, kind: int) -> None:
        self.kind = kind


def _end_reason(error: Exception) -> str:
    """Why a connection ends when handling its bytes raised ``error``."""
    if isinstance(error, wire.ProtocolError):
        return f"client-protocol: {error}"
    if isinstance(error, ConnectionError | OSError):
        return "upstream-lost"  # a write to a socket that just went away
    return f"error: {type(error).__name__}"  # a bug: end this connection, not the listener


def _ms(since: float, now: float) -> float:
    return round((now - since) * 1000.0, 3)


def _loopback(peer: Any) -> bool:
    try:
        return ipaddress.ip_address(str(peer[0]).split("%")[0]).is_loopback
    except (ValueError, TypeError, IndexError):
        return False


def _split_options(options: str) -> list[str]:
    """PostgreSQL's pg_split_opts: whitespace separates, backslash escapes."""
    words: list[str] = []
    current: list[str] = []
    escaped = False
    for char in options:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def _option_settings(options: str) -> list[str] | None:
    """The GUC names an ``options`` string sets, None when it is not only -c/-- settings."""
    words = _split_options(options)
    names: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            setting = words[i + 1]
            i += 2
        elif word.startswith("-c") or word.startswith("--"):
            setting = word[2:]
            i += 1
        else:
            return None
        name, equals, _ = setting.partition("=")
        if not equals:
            return None
        names.append(name.strip().lower().replace("-", "_"))
    return names


def _refusal(text: str, reason: str) -> StatementDecision:
    """A blocked decision made by the proxy itself (policy error, undecodable text)."""
    digest = sha256_hex(text)
    return StatementDecision(
        text=text,
        sha256=digest,
        fingerprint=digest,
        findings=(),
        decision=AuditDecision.BLOCKED,
        reason=reason,
    )


def _spent(decision: StatementDecision) -> StatementDecision:
    """An approved decision whose grant was already used by an earlier run."""
    if decision.decision is not AuditDecision.APPROVED:
        return decision
    grant = decision.grant
    return decision._replace(
        decision=AuditDecision.BLOCKED,
        grant=None,
        reason=(
            f"the approval{f' (grant {grant.id})' if grant else ''} covered one run of this "
            "statement and was used; running it again needs a new approval"
        ),
    )


def _blocked_error(decisions: Sequence[StatementDecision]) -> bytes:
    blocked = [d for d in decisions if d.blocked]
    rules: list[str] = []
    for decision in blocked:
        findings = [f for f in decision.findings if f.get("decision") in ("needs-approval", "deny")]
        for finding in findings or decision.findings:
            rule = finding.get("rule")
            if isinstance(rule, str) and rule not in rules:
                rules.append(rule)
    reasons = list(dict.fromkeys(d.reason or "refused by the gateway's policy" for d in blocked))
    label = f" ({', '.join(rules)})" if rules else ""
    text = f"signoff blocked the statement{label}: {'; '.join(reasons)}"
    first = blocked[0].text.strip() if blocked else ""
    detail = "statement: " + (first if len(first) <= 300 else first[:297] + "...")
    return wire.error_response(SQLSTATE_BLOCKED, text, detail=detail)


class _ClientSide(asyncio.Protocol):
    """The client socket during the relay: bytes are handled in this callback (by
    the connection's C lane first, when it has one)."""

    def __init__(self, conn: _ClientConnection, lane: Any) -> None:
        self.conn = conn
        self.data_received = (  # type: ignore[method-assign]
            conn._client_bytes if lane is None else lane.client_data
        )

    def data_received(self, data: bytes) -> None:  # replaced per instance
        self.conn._client_bytes(data)

    def eof_received(self) -> bool:
        return False  # close the transport: a client that stops sending is gone

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.conn
        if not conn.client_closed.done():
            conn.client_closed.set_result(None)
        conn._client_lost()

    def pause_writing(self) -> None:  # the client is slow to read results
        with contextlib.suppress(Exception):
            self.conn.ut.pause_reading()

    def resume_writing(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.ut.resume_reading()


class _UpstreamSide(asyncio.Protocol):
    """The upstream socket during the relay: bytes are relayed in this callback."""

    def __init__(self, conn: _ClientConnection, lane: Any) -> None:
        self.conn = conn
        self.data_received = (  # type: ignore[method-assign]
            conn._upstream_data if lane is None else lane.upstream_data
        )

    def data_received(self, data: bytes) -> None:  # replaced per instance
        self.conn._upstream_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn._upstream_lost()

    def pause_writing(self) -> None:  # the upstream is slow to take client bytes
        self.conn._block_client(_UPSTREAM_FULL)

    def resume_writing(self) -> None:
        self.conn._unblock_client(_UPSTREAM_FULL)


class _ClientConnection:
    def __init__(
        self, proxy: PgProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.backend = proxy.backend
        self.reader = reader
        self.writer = writer
        self.task: asyncio.Task[Any] | None = None
        self.peer = writer.get_extra_info("peername")
        self.tls = False
        self.session: Session | None = None
        self.up: upstream_mod.UpstreamConnection | None = None
        self.cancel_key: tuple[int, int] | None = None
        self.stopping = False
        self.fatal_seen = False  # the upstream sent FATAL: it is about to close
        # relay state
        self.pending: deque[_Pending] = deque()
        self.txn = _IDLE
        self.discarding = False
        self.statements: dict[bytes, _Prepared] = {}
        self.portals: dict[bytes, _Prepared] = {}
        self.copy_ends = 0
        self.codec = "utf-8"
        # The analysis reads '...' as PostgreSQL does with standard_conforming_strings
        # on (a backslash is an ordinary character). The server reports the setting
        # whenever it changes, however it was changed (SET, set_config, a function,
        # a role default): once it is off, nothing more is decided on this connection.
        self.literals_as_server = True
        # The server reports a changed setting only at its next ReadyForQuery. Until
        # every statement forwarded so far has reached one, a text whose string
        # literals hold a backslash is refused: a statement still running (an existing
        # function, say) may have turned standard_conforming_strings off, and the
        # server would read that text differently from the analysis.
        self.settled = True
        self.batch: list[tuple[int, Outcome]] = []  # outcomes waiting for ReadyForQuery
        # transports and buffers once relaying
        self.ct: asyncio.Transport = writer.transport  # type: ignore[assignment]
        self.ut: asyncio.Transport = writer.transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self.client_closed: asyncio.Future[None] = loop.create_future()
        self.upstream_closed: asyncio.Future[None] = loop.create_future()
        self.relaying = False
        # The client message waiting for its statement entries to be durable
        # (bytes, start of what is not yet forwarded, message start, message end),
        # client bytes that arrived meanwhile, and what the close waits on if the
        # connection ends before the entries are written.
        self.hold: tuple[bytes, int, int, int] | None = None
        self.hold_done: asyncio.Future[None] | None = None
        self.chunks: list[bytes] = []
        self.backlog = 0
        self.read_blocks = 0
        self.ended: asyncio.Future[None] = loop.create_future()
        self.end_reason: str | None = None
        self.background: set[asyncio.Task[None]] = set()
        self.client_passthrough = 0
        self.client_leftover: bytes | bytearray = b""
        self.client_need = 0
        self.up_passthrough = 0
        self.up_leftover = b""
        self.detached = False  # the client is gone: upstream bytes are no longer relayed
        # The C fast lane (runner/_lane.c) for the steady state, when the backend offers
        # one: it takes a message only when _quiet() says this relay has nothing going on.
        self.lane: Any = None
        self.lane_entry_data: Callable[[StatementDecision], str] | None = None

    def shutdown(self) -> None:
        self.stopping = True
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            try:
                started = await asyncio.wait_for(self._startup(), STARTUP_TIMEOUT_S)
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
                if self.lane is not None:
                    self.lane.end()
                self._send_fatal("57P01", "terminating connection due to gateway shutdown")
                if self.up is not None and self.pending:
                    await self.up.cancel(timeout=1.0)
                await self._finish("gateway-shutdown")
            raise
        finally:
            await self._close_client()
            if self.cancel_key is not None:
                _CANCEL_TARGETS.pop(self.cancel_key, None)
            if self.up is not None:
                self.up.abort()

    def _send_fatal(self, code: str, text: str, detail: str | None = None) -> None:
        transport = self.writer.transport
        if not transport.is_closing():
            transport.write(wire.error_response(code, text, severity="FATAL", detail=detail))

    async def _close_client(self) -> None:
        if self.relaying:
            transport = self.ct
            if not transport.is_closing():
                transport.close()  # after what is buffered has been written
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.client_closed), 2)
            if not self.client_closed.done():
                transport.abort()
            return
        writer = self.writer
        with contextlib.suppress(Exception):
            if not writer.transport.is_closing():
                await asyncio.wait_for(writer.drain(), 2)
                writer.close()
            await asyncio.wait_for(writer.wait_closed(), 2)
        if not writer.transport.is_closing():
            writer.transport.abort()

    # -- startup and authentication -------------------------------------------------------------

    async def _startup(self) -> bool:
        reader, writer = self.reader, self.writer
        while True:
            packet = await wire.read_startup(reader)
            if packet.kind == "ssl":
                context = self.proxy.config.ssl_context
                if self.tls or context is None:
                    writer.write(b"N")
                    continue
                # Bytes sent after the SSLRequest but before the handshake were
                # not encrypted (CVE-2021-23214): refuse them.
                if getattr(reader, "_buffer", b""):
                    raise wire.ProtocolError("received unencrypted data after SSL request")
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(context)
                self.tls = True
                continue
            if packet.kind == "gssenc":
                writer.write(b"N")
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
            self.tls or _loopback(self.peer)
        )
        if cleartext:
            server_final = await self._auth_cleartext(verifier, out)
        else:
            server_final = await self._auth_scram(verifier, out)
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
        forwarded, refused = self._forwarded_parameters(params)
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
        self.cancel_key = _issue_cancel_key(_CancelTarget(target, up.pid, up.key, session))
        self.txn = up.transaction_status[0]
        codec = wire.python_codec(up.parameters.get("client_encoding", "UTF8"))
        self.codec = "utf-8" if codec in (None, "ascii") else codec
        self.literals_as_server = up.parameters.get("standard_conforming_strings", "on") == "on"
        if server_final:
            out.append(wire.authentication_sasl_final(server_final))
        out.append(wire.authentication_ok())
        out.extend(up.parameter_messages)
        out.extend(up.notice_messages)
        out.append(wire.backend_key_data(*self.cancel_key))
        out.append(wire.ready_for_query(up.transaction_status))
        writer.write(b"".join(out))
        await writer.drain()
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

    def _forwarded_parameters(self, params: dict[str, str]) -> tuple[dict[str, str], str | None]:
        forwarded: dict[str, str] = {}
        for name, value in params.items():
            lowered = name.lower()
            if lowered in ("user", "database") or lowered.startswith("_pq_."):
                continue
            if lowered == "replication":
                if value.lower() in ("false", "off", "no", "0"):
                    continue
                return {}, name
            if lowered == "options":
                settings = _option_settings(value)
                if settings is None:
                    return {}, name
                bad = [s for s in settings if s not in _ALLOWED_SETTINGS]
                if bad:
                    return {}, f"options: {bad[0]}"
                if settings:
                    forwarded[name] = value
                continue
            if lowered not in _ALLOWED_SETTINGS:
                return {}, name
            forwarded[name] = value
        return forwarded, None

    async def _read_auth_message(self) -> bytes:
        kind, body = await wire.read_message(self.reader, max_length=_AUTH_MESSAGE_MAX)
        if kind != wire.PASSWORD:
            raise wire.ProtocolError(f"expected password response, got message type {chr(kind)!r}")
        return body

    async def _auth_scram(self, verifier: ScramVerifier, out: list[bytes]) -> bytes | None:
        """The SCRAM exchange up to the proof check: server-final-message, or None."""
        out.append(wire.authentication_sasl(["SCRAM-SHA-256"]))
        self.writer.write(b"".join(out))
        out.clear()
        await self.writer.drain()
        mechanism, client_first = wire.parse_sasl_initial_response(await self._read_auth_message())
        if mechanism != "SCRAM-SHA-256":
            raise wire.ProtocolError("client selected an invalid SASL authentication mechanism")
        exchange = _ScramExchange(verifier)
        try:
            server_first = exchange.first(client_first)
        except _ScramFailed:
            return None
        self.writer.write(wire.authentication_sasl_continue(server_first))
        await self.writer.drain()
        client_final = await self._read_auth_message()
        try:
            return exchange.final(client_final)
        except _ScramFailed:
            return None

    async def _auth_cleartext(self, verifier: ScramVerifier, out: list[bytes]) -> bytes | None:
        out.append(wire.authentication_cleartext())
        self.writer.write(b"".join(out))
        out.clear()
        await self.writer.drain()
        body = await self._read_auth_message()
        secret = body.rstrip(b"\x00").decode("utf-8", "replace")
        matches = await asyncio.to_thread(verifier.matches, secret)
        return b"" if matches else None

    async def _cancel_request(self, pid: int, key: int) -> None:
        target = _CANCEL_TARGETS.get((pid, key))
        if target is None:
            return  # like PostgreSQL: no answer, whatever happened
        await upstream_mod.cancel(target.upstream, target.pid, target.key)
        await self._event(target.session, "cancel", pid=pid)

    async def _event(self, session: Session | None, event: str, **data: Any) -> None:
        with contextlib.suppress(Exception):
            await self.backend.record_event(session, event, **data)

    # -- steady state -----------------------------------------------------------------------------
    #
    # After the startup both sockets leave their StreamReaders: each transport
    # gets a small protocol whose data_received does the work (no reader
    # buffers, no task switch per message). Upstream -> client runs entirely in
    # the upstream transport's callback. Client -> upstream runs in the client
    # transport's callback until a statement needs its audit entries: the bytes
    # before it are forwarded, the rest is held (client bytes arriving meanwhile
    # are queued), and the audit log's commit calls back into the connection,
    # which forwards the statement and goes on. The connection's task only waits
    # for the end and closes up.

    async def _relay(self) -> None:
        assert self.up is not None
        self.relaying = True
        client_early = bytes(getattr(self.reader, "_buffer", b""))
        upstream_early = bytes(getattr(self.up.reader, "_buffer", b""))
        self.ct = self.writer.transport  # type: ignore[assignment]
        self.ut = self.up.writer.transport  # type: ignore[assignment]
        lane = self._new_lane()
        self.ct.set_protocol(_ClientSide(self, lane))
        self.ut.set_protocol(_UpstreamSide(self, lane))
        for transport in (self.ct, self.ut):
            with contextlib.suppress(Exception):
                transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if upstream_early:
            self._upstream_data(upstream_early)
        if client_early:
            self._feed(client_early)
        self.lane = lane
        if lane is not None:
            lane.quiet = self._quiet()
        # A side that closed before the switch told its old protocol, not the new one.
        if self.up.reader.at_eof() or self.up.writer.transport.is_closing():
            self._upstream_lost()
        if self.reader.at_eof() or self.writer.transport.is_closing():
            self.client_closed.set_result(None)
            self._client_lost()
        for transport in (self.ct, self.ut):
            with contextlib.suppress(Exception):
                if not transport.is_reading():
                    transport.resume_reading()
        await asyncio.shield(self.ended)
        reason = self.end_reason or "closed"
        if reason.startswith("error: "):  # a bug: end this connection, not the listener
            self._send_fatal("XX000", "internal error in the gateway; the connection is closed")
        if reason.startswith("client-protocol"):
            self._send_fatal("08P01", reason.partition(": ")[2] or "protocol violation")
        if reason == "terminated":
            # The server answers whatever was pipelined before the Terminate,
            # then closes: let those outcomes arrive.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.upstream_closed), TERMINATE_GRACE_S)
            reason = "closed"
        elif reason == "client-lost" or reason.startswith("client-protocol"):
            # What is in flight stays "connection-lost": stop reading the upstream
            # (its answer to the cancel below is not the statement's outcome).
            self.detached = True
            with contextlib.suppress(Exception):
                self.ut.pause_reading()
            if self.pending and not self.upstream_closed.done():
                # A backend busy in a long statement would not notice the closed
                # socket until it next writes: cancel it first.
                await self.up.cancel(timeout=2.0)
        elif reason == "upstream-lost":
            self._send_fatal("08006", "the gateway lost its connection to the database")
        elif reason.startswith("protocol"):
            self._send_fatal("08P01", "the gateway lost protocol sync with the database")
        if not self.ut.is_closing():
            with contextlib.suppress(Exception):
                self.ut.write(wire.terminate())
            self.ut.close()
        await self._finish(reason)

    def _end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        if self.lane is not None:
            self.lane.end()  # what it has in flight is this relay's from now on
        if not self.ended.done():
            self.ended.set_result(None)

    def _block_client(self, why: int) -> None:
        if not self.read_blocks:
            with contextlib.suppress(Exception):
                self.ct.pause_reading()
        self.read_blocks |= why

    def _unblock_client(self, why: int) -> None:
        self.read_blocks &= ~why
        if not self.read_blocks:
            with contextlib.suppress(Exception):
                self.ct.resume_reading()

    def _submit_outcomes(self, owed: list[tuple[int, Outcome]]) -> None:
        if owed and self.session is not None:
            with contextlib.suppress(Exception):  # a failed write is logged by the writer
                self.backend.submit_outcomes(self.session, owed)

    async def _finish(self, reason: str) -> None:
        """Record what is still owed to the audit log, then the close."""
        session = self.session
        if session is None:
            return
        if self.lane is not None:
            self.lane.end()
        if self.hold is not None or (self.lane is not None and self.lane.holding):
            # a statement still waiting for its record: its
            # entries are written whatever happens, and get their outcome (not-run)
            self.hold_done = asyncio.get_running_loop().create_future()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.hold_done), STARTUP_TIMEOUT_S)
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        owed: list[tuple[int, Outcome]] = []
        lost = reason != "closed"
        status = "connection-lost"
        for seq, outcome in self.batch:
            if outcome.status == "completed":
                outcome = outcome._replace(status=status)
            owed.append((seq, outcome))
        self.batch = []
        now = time.perf_counter()
        for entry in self.pending:
            if entry.kind == K_QUERY:
                for i, seq in enumerate(entry.seqs):
                    if i < len(entry.results):
                        result = entry.results[i]
                        if result.status == "completed":
                            result = result._replace(status=status)
                        owed.append((seq, result))
                    elif entry.blocked_error is not None:
                        owed.append((seq, self._blocked_outcome(entry, i)))
                    else:
                        owed.append((seq, Outcome(status=status, duration_ms=_ms(entry.t0, now))))
            elif entry.kind == K_EXECUTE:
                for i, seq in enumerate(entry.seqs):
                    if entry.blocked_error is not None:
                        owed.append((seq, self._blocked_outcome(entry, i)))
                    else:
                        owed.append((seq, Outcome(status=status, duration_ms=_ms(entry.t0, now))))
            elif entry.kind == K_PARSE and entry.blocked_error is not None:
                for i, seq in enumerate(entry.seqs):
                    owed.append((seq, self._blocked_outcome(entry, i)))
        self.pending.clear()
        self._submit_outcomes(owed)
        self.session = None  # once
        await self._event(session, "closed", reason=reason if lost else "client terminated")

    @staticmethod
    def _blocked_outcome(entry: _Pending, index: int) -> Outcome:
        decisions = entry.decisions
        blocked = index < len(decisions) and decisions[index].blocked
        return Outcome(sqlstate=SQLSTATE_BLOCKED if blocked else None, status="not-run")

    # the C fast lane ---------------------------------------------------------------------------

    def _new_lane(self) -> Any:
        session = self.session
        if session is None or _native is None:
            return None
        support = self.backend.fast_lane(session)
        if support is None:
            return None
        self.lane_entry_data = support.entry_data
        return _native.Lane(
            self,
            self.ct.write,
            self.ut.write,
            support.queue,
            session.id,
            support.shapes,
            support.texts,
            CLIENT_BACKLOG_MAX,
        )

    def _quiet(self) -> bool:
        """Nothing is going on in this relay, outside a transaction, with string
        literals read as the analysis reads them: the lane may decide the next
        message from its caches."""
        return self._relay_idle() and self.txn == _IDLE and self._literals_as_analysis()

    def _literals_as_analysis(self) -> bool:
        """The server reads this connection's texts as the analysis (and the lane's C
        scanner) does: standard_conforming_strings on, UTF-8."""
        return self.literals_as_server and self.codec == "utf-8"

    def _relay_idle(self) -> bool:
        """Nothing is going on in this relay: the lane may carry a message it decided."""
        return (
            not self.pending
            and self.hold is None
            and not self.chunks
            and not self.batch
            and not self.discarding
            and not self.client_leftover
            and not self.client_passthrough
            and not self.up_leftover
            and not self.up_passthrough
            and self.end_reason is None
            and not self.fatal_seen
            and not self.detached
        )

    def _lane_carries(self, data: bytes, decisions: Sequence[StatementDecision]) -> bool:
        """Give the lane a Query this relay decided (``data`` is that one message, one
        allowed statement): it records, forwards and relays it as its own."""
        lane = self.lane
        if (
            lane is None
            or len(decisions) != 1
            or decisions[0].blocked
            or self.lane_entry_data is None
            or not self._relay_idle()
        ):
            return False
        entry_data = self.lane_entry_data(decisions[0])
        return bool(lane.carry(data, entry_data, self.txn, self._literals_as_analysis()))

    def _lane_one_shot_text(self, data: bytes) -> bytes | None:
        """The Parse text when ``data`` is the extended protocol's one-shot shape (Parse,
        Bind, [Describe], Execute, Sync of the unnamed statement) and the lane could
        carry it now; None: this relay handles the messages one by one."""
        if self.lane_entry_data is None or not self._relay_idle():
            return None
        text: bytes | None = self.lane.one_shot(data)
        return text

    def _lane_carries_one_shot(self, data: bytes, decisions: list[StatementDecision]) -> bool:
        """Give the lane the one-shot shape whose text this relay decided: one allowed
        statement (no grant: a grant covers one run, and the unnamed statement could
        be run again without a Parse, which this relay counts)."""
        if len(decisions) != 1 or decisions[0].decision is not _ALLOWED:
            return False
        assert self.lane_entry_data is not None
        entry_data = self.lane_entry_data(decisions[0])
        return bool(
            self.lane.carry_one_shot(
                data, decisions[0], entry_data, self.txn, self._literals_as_analysis()
            )
        )

    def _slow_client(self, data: bytes) -> bool:
        """Client bytes the lane leaves to this relay; then whether it is quiet."""
        self._client_bytes(data)
        return self._quiet()

    def _slow_upstream(self, data: bytes) -> bool:
        """Upstream bytes the lane leaves to this relay; then whether it is quiet."""
        self._upstream_data(data)
        return self._quiet()

    def _lane_adopt(
        self,
        seq: int,
        t0: float,
        tag: str | None,
        at: float,
        decision: StatementDecision | None = None,
        answered: int = 0,
        described: bool = False,
    ) -> None:
        """The lane's statement in flight (recorded as ``seq``, forwarded at ``t0``,
        its CommandComplete ``tag`` read at ``at``) is this relay's from here on: a
        simple Query, or (``decision``) the extended shape of which the server has
        ``answered`` Parse, Bind and Describe so far."""
        self.settled = False  # its ReadyForQuery has not come yet
        done = (
            None
            if tag is None
            else Outcome(
                tag=tag, rows=wire.rows_from_tag(tag), duration_ms=_ms(t0, at), status="completed"
            )
        )
        if decision is None:
            entry = _Pending(K_QUERY)
            entry.seqs = [seq]
            entry.results = [] if done is None else [done]
            entry.t0 = t0 if done is None else at
            self.pending.appendleft(entry)  # sent before anything this relay has pending
            return
        entries, execute = self._lane_extended(decision, described)
        execute.seqs = [seq]
        execute.t0 = t0
        if done is not None:  # CommandComplete came: Execute is answered
            entries.remove(execute)
            self.batch.append((seq, done))
        del entries[:answered]
        self.pending.extendleft(reversed(entries))

    def _lane_unhold(
        self,
        seq: int | None,
        held: bytes,
        rest: list[bytes],
        decision: StatementDecision | None,
        execute_at: int,
        execute_end: int,
        described: bool,
    ) -> None:
        """The lane's held statement when its entry could not be written (``seq``
        None) or the connection ended meanwhile: what this relay does with a held
        statement (a Query; or an Execute, after the Parse, Bind and Describe)."""
        seqs = None if seq is None else [seq]
        self.chunks[:0] = rest
        self.backlog += sum(len(chunk) for chunk in rest)
        if decision is None:
            entry = _Pending(K_QUERY)
            entry.results = []
            self.hold = (held, 0, 0, len(held))
            self._recorded(seqs, functools.partial(self._query_recorded, entry))
            return
        entries, execute = self._lane_extended(decision, described)
        self.pending.extend(entries[: entries.index(execute)])
        decisions = list(execute.decisions)
        self.hold = (held, 0, execute_at, execute_end)
        self._recorded(seqs, lambda s: self._execute_recorded(execute, decisions, s))

    def _lane_extended(
        self, decision: StatementDecision, described: bool
    ) -> tuple[list[_Pending], _Pending]:
        """The lane's extended shape as _client_data would have handled it: the unnamed
        statement and portal it makes (the portal run), and the entries of Parse, Bind,
        [Describe], Execute and Sync, in order (Execute's is returned too)."""
        parse = _Pending(K_PARSE)
        parse.name = b""
        parse.prev = self.statements.get(b"")
        bind = _Pending(K_BIND)
        bind.name = b""
        bind.prev = self.portals.get(b"")
        portal = self._lane_unnamed(decision)
        parse.info = portal.statement
        parse.decisions = decisions = portal.decisions
        bind.info = portal
        execute = _Pending(K_EXECUTE)
        execute.copy_ends = self.copy_ends
        execute.decisions = decisions
        sync = _Pending(K_SYNC)
        sync.copy_ends = self.copy_ends
        entries = [parse, bind]
        if described:
            entries.append(_Pending(K_DESCRIBE))
        entries += [execute, sync]
        return entries, execute

    def _lane_unnamed(self, decision: StatementDecision) -> _Portal:
        """The lane ran (or runs) the extended shape of ``decision``: the unnamed
        statement and its portal, run, are as if this relay had handled it."""
        info = _Prepared([decision], False)
        portal = _Portal(info)
        portal.ran = True
        self.statements[b""] = info
        self.portals[b""] = portal
        return portal

    def _lane_resume(self, rest: list[bytes]) -> None:
        """Client bytes that came while the lane held a statement, now forwarded and
        handed over: this relay goes on with them."""
        if self.read_blocks & _BACKLOG:
            self._unblock_client(_BACKLOG)
        self._feed(b"".join(rest))

    def _lane_backlog(self) -> None:
        self._block_client(_BACKLOG)

    def _lane_failed(self, error: BaseException) -> None:
        self._end(_end_reason(error) if isinstance(error, Exception) else "error: lane")

    # client -> upstream ---------------------------------------------------------------------

    def _client_bytes(self, data: bytes) -> None:
        """Client bytes, or queued while a statement waits for its audit record."""
        if self.hold is None:
            if self.end_reason is None:
                self._feed(data)
            return
        self.chunks.append(data)
        self.backlog += len(data)
        if self.backlog > CLIENT_BACKLOG_MAX:
            self._block_client(_BACKLOG)

    def _feed(self, data: bytes) -> None:
        """Handle a run of client bytes (in a callback): any error ends the connection."""
        try:
            ended = self._client_data(data)
        except Exception as exc:
            ended = _end_reason(exc)
        if ended is not None:
            self._end(ended)

    def _hold_for_record(
        self,
        data: bytes,
        start: int,
        pos: int,
        end: int,
        decisions: Sequence[StatementDecision],
        then: Callable[[list[int] | None], bytes | None],
    ) -> None:
        """Hold the message data[pos:end] and what follows it until the statement
        entries of ``decisions`` are durable; then ``then(seqs)`` (None: the audit log
        failed) gives what goes upstream in its place (None: the message itself).
        The messages before it not yet forwarded (data[start:pos]: a Parse, Bind and
        Describe before an Execute) go with it, in one write: the server is woken
        once per round trip, not twice."""
        assert self.session is not None
        self.hold = (data, start, pos, end)
        self.backend.submit_statements(
            self.session, decisions, lambda seqs: self._recorded(seqs, then)
        )

    def _recorded(
        self, seqs: list[int] | None, then: Callable[[list[int] | None], bytes | None]
    ) -> None:
        """The held statement's entries are durable (or failed): forward, go on."""
        hold = self.hold
        self.hold = None
        if hold is None:
            return
        if self.end_reason is not None:  # the connection ended meanwhile: not run
            if seqs:
                self._submit_outcomes([(seq, Outcome(status="not-run")) for seq in seqs])
            if self.hold_done is not None and not self.hold_done.done():
                self.hold_done.set_result(None)  # _finish may go on
            return
        data, start, pos, end = hold
        try:
            replacement = then(seqs)
            if replacement is None:
                self.ut.write(data[start:end])
            else:
                self.ut.write(data[start:pos] + replacement)
        except Exception as exc:
            self._end(_end_reason(exc))
            return
        rest = data[end:]
        chunks = self.chunks
        if chunks:
            rest = b"".join([rest, *chunks])
            chunks.clear()
            self.backlog = 0
            if self.read_blocks & _BACKLOG:
                self._unblock_client(_BACKLOG)
        if rest:
            self._feed(rest)

    def _client_data(self, data: bytes) -> str | None:
        """Handle a run of client bytes; the end reason when the client said Terminate.
        Returns early, holding the rest, when a statement must be recorded first."""
        up = self.ut
        passthrough = self.client_passthrough
        if passthrough:
            if len(data) <= passthrough:
                self.client_passthrough = passthrough - len(data)
                up.write(data)
                return None
            pos = passthrough
            self.client_passthrough = 0
        elif self.client_leftover:
            leftover = self.client_leftover
            if len(leftover) + len(data) < self.client_need:
                # A large message still arriving: gather without reparsing.
                if isinstance(leftover, bytes):
                    leftover = self.client_leftover = bytearray(leftover)
                leftover += data
                return None
            data = bytes(leftover + data)
            self.client_leftover = b""
            self.client_need = 0
            pos = 0
        else:
            pos = 0
        n = len(data)
        start = 0
        pending = self.pending
        while n - pos >= 5:
            kind = data[pos]
            (length,) = _U32.unpack_from(data, pos + 1)
            end = pos + 1 + length
            if length < 4 or length > _MAX_CLIENT_MESSAGE:
                raise wire.ProtocolError(f"invalid message length for type {chr(kind)!r}")
            if end > n:
                if kind == wire.COPY_DATA:
                    self.client_passthrough = end - n
                    pos = n
                else:
                    self.client_need = end - pos
                break
            if kind == wire.QUERY:
                decisions = self._decide(data[pos + 5 : end - 1])
                entry = _Pending(K_QUERY)
                entry.results = []
                entry.decisions = decisions
                if decisions:
                    if start == pos == 0 and end == n and self._lane_carries(data, decisions):
                        return None
                    self._hold_for_record(
                        data,
                        start,
                        pos,
                        end,
                        decisions,
                        functools.partial(self._query_recorded, entry),
                    )
                    return None
                entry.t0 = time.perf_counter()  # an empty query: nothing to record
                pending.append(entry)
            elif kind == wire.COPY_DATA or kind == wire.FLUSH:
                pass
            elif kind == wire.PARSE:
                decisions = None
                if pos == 0 and self.lane is not None:
                    text = self._lane_one_shot_text(data)
                    if text is not None:
                        decisions = self._decide(text)
                        if self._lane_carries_one_shot(data, decisions):
                            return None
                recording = self._on_parse(data[pos + 5 : end], decisions)
                if recording is not None:
                    self._hold_for_record(data, start, pos, end, *recording)
                    return None
            elif kind == wire.BIND:
                self._on_bind(data[pos + 5 : end])
            elif kind == wire.EXECUTE:
                recording = self._on_execute(data[pos + 5 : end])
                if recording is not None:
                    self._hold_for_record(data, start, pos, end, *recording)
                    return None
            elif kind == wire.SYNC:
                entry = _Pending(K_SYNC)
                entry.copy_ends = self.copy_ends
                pending.append(entry)
            elif kind == wire.DESCRIBE:
                pending.append(_Pending(K_DESCRIBE))
            elif kind == wire.CLOSE:
                self._on_close(data[pos + 5 : end])
            elif kind == wire.COPY_DONE or kind == wire.COPY_FAIL:
                self.copy_ends += 1
            elif kind == wire.TERMINATE:
                up.write(data[start:end])
                return "terminated"
            elif kind == wire.FUNCTION_CALL:
                if start < pos:
                    up.write(data[start:pos])
                up.write(self._on_function_call())
                start = end
            else:
                raise wire.ProtocolError(f"unexpected message type {chr(kind)!r}")
            pos = end
        if start < pos:
            up.write(data if start == 0 and pos == n else data[start:pos])
        if pos < n and not self.client_passthrough:
            self.client_leftover = data[pos:]
        return None

    def _decide(self, raw: bytes) -> list[StatementDecision]:
        assert self.session is not None
        try:
            text = raw.decode(self.codec)
        except (UnicodeDecodeError, LookupError):
            return [
                _refusal(
                    raw.decode("utf-8", "replace"),
                    "the statement text is not valid in the client encoding; refused",
                )
            ]
        if not self.literals_as_server:
            return [
                _refusal(
                    text,
                    "standard_conforming_strings is off on this connection, so the server "
                    "reads backslashes in string literals differently from the gateway's "
                    "analysis; refused: reconnect (it is on by default)",
                )
            ]
        if b"\\" in raw and not self._settled():
            return [
                _refusal(
                    text,
                    "a text with a backslash sent before the statements ahead of it have "
                    "answered: if one of them turned standard_conforming_strings off, the "
                    "server would read its string literals differently from the gateway's "
                    "analysis; refused: send it once they have answered, or pass the value "
                    "as a parameter",
                )
            ]
        try:
            decisions = self.backend.decide(self.session, text, in_transaction=self.txn != _IDLE)
            return decisions if type(decisions) is list else list(decisions)
        except Exception as exc:
            return [
                _refusal(
                    text,
                    "the gateway's policy failed on this statement "
                    f"({type(exc).__name__}); refused",
                )
            ]

    def _query_recorded(self, entry: _Pending, seqs: list[int] | None) -> bytes | None:
        decisions = entry.decisions
        if seqs is None:
            entry.blocked_error = self._audit_failed_error()
        else:
            entry.seqs = seqs
            for decision in decisions:
                if decision.decision is _BLOCKED:
                    entry.blocked_error = _blocked_error(decisions)
                    break
        self.pending.append(entry)
        if entry.blocked_error is None:
            entry.t0 = time.perf_counter()
            self.settled = False
            return None
        return wire.query(BLOCKED_SQL)

    @staticmethod
    def _audit_failed_error() -> bytes:
        return wire.error_response(
            "58000",
            "signoff could not record the statement in the audit log; it was not run",
        )

    def _on_function_call(self) -> bytes:
        # Nothing is forwarded, so nothing waits for the event's record.
        task = asyncio.get_running_loop().create_task(
            self._event(self.session, "function-call-refused")
        )
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        entry = _Pending(K_QUERY)
        entry.blocked_error = wire.error_response(
            SQLSTATE_BLOCKED,
            "signoff blocked a function call: the fast-path function call protocol "
            "is not allowed through the gateway; use a SELECT",
        )
        self.pending.append(entry)
        return wire.query(BLOCKED_SQL)

    def _on_parse(
        self, body: bytes, decisions: list[StatementDecision] | None = None
    ) -> _Recording | None:
        """Track the statement (``decisions`` when its text was decided already); None
        to forward the Parse as is, else what to record first and what to forward once
        recorded (a blocked statement)."""
        message = wire.parse_parse(body)
        if decisions is None:
            decisions = self._decide(message.text)
        blocked = any(d.blocked for d in decisions)
        info = _Prepared(decisions, blocked)
        entry = _Pending(K_PARSE)
        entry.name = message.name
        entry.info = info
        entry.prev = self.statements.get(message.name)
        entry.decisions = decisions
        self.statements[message.name] = info
        if not blocked:
            self.pending.append(entry)
            return None
        return decisions, lambda seqs: self._blocked_parse(entry, seqs)

    def _blocked_parse(self, entry: _Pending, seqs: list[int] | None) -> bytes:
        if seqs is None:
            entry.blocked_error = self._audit_failed_error()
        else:
            entry.seqs = seqs
            entry.blocked_error = _blocked_error(entry.decisions)
        self.pending.append(entry)
        return wire.parse(entry.name, BLOCKED_SQL)

    def _on_bind(self, body: bytes) -> None:
        portal, statement = wire.parse_bind_names(body)
        entry = _Pending(K_BIND)
        entry.name = portal
        entry.prev = self.portals.get(portal)
        info = self.statements.get(statement)
        if info is None:
            self.portals.pop(portal, None)
        else:
            entry.info = self.portals[portal] = _Portal(info)
        self.pending.append(entry)

    def _on_execute(self, body: bytes) -> _Recording | None:
        portal_name, _ = wire.parse_execute(body)
        portal = self.portals.get(portal_name)
        entry = _Pending(K_EXECUTE)
        entry.copy_ends = self.copy_ends
        if portal is None or portal.blocked or not portal.decisions:
            entry.t0 = time.perf_counter()
            self.pending.append(entry)
            return None
        decisions = portal.decisions
        if isinstance(portal, _Portal) and not portal.ran:
            portal.ran = True
            statement = portal.statement
            if statement.approved:
                statement.runs += 1
                if statement.runs > 1:
                    decisions = [_spent(d) for d in decisions]
        return decisions, lambda seqs: self._execute_recorded(entry, decisions, seqs)

    def _execute_recorded(
        self, entry: _Pending, decisions: list[StatementDecision], seqs: list[int] | None
    ) -> bytes | None:
        entry.decisions = decisions
        if seqs is None:
            entry.blocked_error = self._audit_failed_error()
        elif any(d.blocked for d in decisions):
            entry.seqs = seqs
            entry.blocked_error = _blocked_error(decisions)
        if entry.blocked_error is not None:
            # Not run: a Parse that fails upstream errors in the Execute's place
            # (and the server skips to Sync, as after a failed Execute).
            self.pending.append(entry)
            return wire.parse(b"signoff_refused", BLOCKED_SQL)
        entry.seqs = seqs or _NO_SEQS
        entry.t0 = time.perf_counter()
        self.settled = False
        self.pending.append(entry)
        return None

    def _on_close(self, body: bytes) -> None:
        target, name = wire.parse_target(body)
        entry = _Pending(K_CLOSE)
        entry.target = target
        entry.name = name
        mapping = self.statements if target == ord("S") else self.portals
        entry.prev = mapping.pop(name, None)
        self.pending.append(entry)

    # upstream -> client ---------------------------------------------------------------------

    def _upstream_data(self, data: bytes) -> None:
        """Relay upstream bytes to the client (in the upstream transport's callback)."""
        if self.detached:
            return
        client = self.ct
        passthrough = self.up_passthrough
        if passthrough:
            if len(data) <= passthrough:
                self.up_passthrough = passthrough - len(data)
                client.write(data)
                return
            pos = passthrough
            self.up_passthrough = 0
        else:
            if self.up_leftover:
                data = self.up_leftover + data
                self.up_leftover = b""
            pos = 0
        n = len(data)
        start = 0
        pieces: list[bytes] | None = None
        try:
            while n - pos >= 5:
                kind = data[pos]
                (length,) = _U32.unpack_from(data, pos + 1)
                end = pos + 1 + length
                if kind == _DATA_ROW:
                    if end > n:
                        self.up_passthrough = end - n
                        pos = n
                        break
                    pos = end
                    continue
                if kind == _ROW_DESCRIPTION and end <= n:
                    pending = self.pending
                    if pending and pending[0].kind == K_DESCRIBE:
                        pending.popleft()
                    pos = end
                    continue
                if length < 4:
                    raise wire.ProtocolError("invalid message length from the upstream")
                if kind in _NEED_BODY:
                    if end > n:
                        break
                    if kind == _COMMAND_COMPLETE:
                        self._on_complete(data, pos + 5, end)
                    elif kind == _READY_FOR_QUERY:
                        self._on_ready(data[pos + 5])
                    elif kind == _ERROR_RESPONSE:
                        replacement = self._on_error(data[pos + 5 : end])
                        if replacement is not None:
                            if pieces is None:
                                pieces = []
                            pieces.append(data[start:pos])
                            pieces.append(replacement)
                            start = end
                    else:
                        self._on_parameter_status(data[pos + 5 : end])
                else:
                    self._on_header(kind)
                    if end > n:
                        self.up_passthrough = end - n
                        pos = n
                        break
                pos = end
        except wire.ProtocolError:
            self.ut.abort()
            self._end("protocol: the upstream broke the protocol")
            return
        if pieces is not None:
            pieces.append(data[start:pos])
            client.write(b"".join(pieces))
        elif pos:
            client.write(data if pos == n else data[:pos])
        if pos < n and not self.up_passthrough:
            self.up_leftover = data[pos:]

    def _on_parameter_status(self, body: bytes) -> None:
        name, value = wire.parse_parameter_status(body)
        if name == "standard_conforming_strings":
            self.literals_as_server = value == "on"
        elif name == "client_encoding":
            codec = wire.python_codec(value)
            self.codec = "utf-8" if codec in (None, "ascii") else codec

    def _upstream_lost(self) -> None:
        if not self.upstream_closed.done():
            self.upstream_closed.set_result(None)
        self._end("upstream-fatal" if self.fatal_seen else "upstream-lost")

    def _client_lost(self) -> None:
        self._end("client-lost")

    def _on_header(self, kind: int) -> None:
        """Messages whose body the proxy does not need."""
        pending = self.pending
        if not pending:
            return
        head = pending[0]
        if kind == wire.PARSE_COMPLETE:
            if head.kind == K_PARSE:
                pending.popleft()
        elif kind == wire.BIND_COMPLETE:
            if head.kind == K_BIND:
                pending.popleft()
        elif kind == wire.ROW_DESCRIPTION or kind == wire.NO_DATA:
            if head.kind == K_DESCRIBE:
                pending.popleft()
        elif kind == wire.CLOSE_COMPLETE:
            if head.kind == K_CLOSE:
                pending.popleft()
        elif kind == wire.EMPTY_QUERY_RESPONSE:
            self._statement_done(head, None, None)
        elif kind == wire.PORTAL_SUSPENDED:
            if head.kind == K_EXECUTE:
                self._statement_done(head, None, None)
        elif kind == wire.COPY_IN_RESPONSE and head.kind == K_EXECUTE:
            head.copy_in = True

    def _on_complete(self, data: bytes, start: int, end: int) -> None:
        if self.pending:
            tag = data[start : end - 1].decode("utf-8", "replace")
            self._statement_done(self.pending[0], tag, wire.rows_from_tag(tag))

    def _statement_done(self, head: _Pending, tag: str | None, rows: int | None) -> None:
        kind = head.kind
        if kind == K_QUERY:
            if len(head.results) < len(head.seqs):
                now = time.perf_counter()
                head.results.append(
                    Outcome(tag=tag, rows=rows, duration_ms=_ms(head.t0, now), status="completed")
                )
                head.t0 = now
        elif kind == K_EXECUTE:
            self.pending.popleft()
            if head.seqs:
                outcome = Outcome(
                    tag=tag,
                    rows=rows,
                    duration_ms=_ms(head.t0, time.perf_counter()),
                    status="completed",
                )
                for seq in head.seqs:
                    self.batch.append((seq, outcome))
            if head.copy_in:
                self._drop_syncs_read_during_copy(head)

    def _drop_syncs_read_during_copy(self, head: _Pending) -> None:
        """The server ignores Sync (and Flush) while in COPY FROM STDIN mode: libpq
        sends a Sync right after the Execute and another after CopyDone."""
        ignored = [e for e in self.pending if e.kind == K_SYNC and e.copy_ends == head.copy_ends]
        for entry in ignored:
            self.pending.remove(entry)

    def _settled(self) -> bool:
        """Every statement forwarded so far has reached its ReadyForQuery."""
        return self.settled and not any(
            entry.kind == K_QUERY or entry.kind == K_EXECUTE for entry in self.pending
        )

    def _on_ready(self, status: int) -> None:
        self.txn = status
        pending = self.pending
        if self.discarding:
            self.discarding = False
            while pending:
                entry = pending.popleft()
                if entry.kind == K_SYNC:
                    break
                self._discarded(entry)
        else:
            while pending:
                entry = pending.popleft()
                if entry.kind == K_QUERY:
                    self._finish_query(entry)
                    break
                if entry.kind == K_SYNC:
                    break
                self._discarded(entry)
        if not self.settled and not any(
            entry.kind == K_QUERY or entry.kind == K_EXECUTE for entry in pending
        ):
            self.settled = True  # whatever changed a setting has been reported by now
        if self.batch:
            # Written with the next commit of the audit log, not waited for.
            self._submit_outcomes(self.batch)
            self.batch = []

    def _finish_query(self, entry: _Pending) -> None:
        batch = self.batch
        results = entry.results
        for i, seq in enumerate(entry.seqs):
            if i < len(results):
                batch.append((seq, results[i]))
            elif entry.blocked_error is not None:
                batch.append((seq, self._blocked_outcome(entry, i)))
            else:
                batch.append((seq, Outcome(status="not-run")))

    def _discarded(self, entry: _Pending) -> None:
        """An entry the server skipped (after an error, until Sync)."""
        kind = entry.kind
        if kind == K_EXECUTE:
            for i, seq in enumerate(entry.seqs):
                self.batch.append((seq, self._blocked_outcome(entry, i)))
        elif kind == K_QUERY:
            self._finish_query(entry)
        elif kind == K_PARSE:
            for i, seq in enumerate(entry.seqs):
                self.batch.append((seq, self._blocked_outcome(entry, i)))
            self._revert(self.statements, entry, entry.prev)
        elif kind == K_BIND:
            self._revert(self.portals, entry, entry.prev)
        elif kind == K_CLOSE and entry.prev is not None:
            mapping = self.statements if entry.target == ord("S") else self.portals
            mapping.setdefault(entry.name, entry.prev)

    def _revert(
        self, mapping: dict[bytes, _Prepared], entry: _Pending, to: _Prepared | None
    ) -> None:
        """Undo what a Parse/Bind that did not take effect upstream did to the map."""
        if entry.info is not None and mapping.get(entry.name) is entry.info:
            if to is None:
                del mapping[entry.name]
            else:
                mapping[entry.name] = to
        for other in self.pending:
            if other.kind == entry.kind and other.name == entry.name and other.prev is entry.info:
                other.prev = to

    def _on_error(self, body: bytes) -> bytes | None:
        """Attribute an ErrorResponse; the replacement bytes for a blocked statement's."""
        fields = wire.parse_error_fields(body)
        severity = fields.get("V") or fields.get("S") or "ERROR"
        if severity in ("FATAL", "PANIC"):
            self.fatal_seen = True  # not an answer to a message: the server is leaving
            return None
        pending = self.pending
        if not pending:
            return None
        sqlstate = fields.get("C")
        head = pending[0]
        now = time.perf_counter()
        if head.kind == K_QUERY:
            if head.blocked_error is not None:
                return head.blocked_error
            if len(head.results) < len(head.seqs):
                head.results.append(
                    Outcome(sqlstate=sqlstate, status="failed", duration_ms=_ms(head.t0, now))
                )
            else:  # every statement completed: the implicit commit failed
                head.results[:] = [
                    r._replace(sqlstate=sqlstate, status="failed") if r.status == "completed" else r
                    for r in head.results
                ]
            return None
        if head.kind == K_SYNC:  # the commit at Sync failed: nothing of the batch stays
            self.batch = [
                (
                    seq,
                    o._replace(sqlstate=sqlstate, status="failed")
                    if o.status == "completed"
                    else o,
                )
                for seq, o in self.batch
            ]
            return None
        # An extended-protocol message failed: the server skips to the next Sync.
        pending.popleft()
        replacement = head.blocked_error
        if head.kind == K_PARSE:
            for i, seq in enumerate(head.seqs):
                self.batch.append((seq, self._blocked_outcome(head, i)))
            # A failed Parse leaves a named statement as it was; the unnamed one is gone.
            self._revert(self.statements, head, head.prev if head.name else None)
        elif head.kind == K_BIND:
            self._revert(self.portals, head, head.prev if head.name else None)
        elif head.kind == K_EXECUTE:
            duration = _ms(head.t0, now)
            for i, seq in enumerate(head.seqs):
                if replacement is not None:
                    self.batch.append((seq, self._blocked_outcome(head, i)))
                else:
                    self.batch.append(
                        (seq, Outcome(sqlstate=sqlstate, status="failed", duration_ms=duration))
                    )
            if head.copy_in:
                self._drop_syncs_read_during_copy(head)
        self.discarding = True
        while pending and pending[0].kind != K_SYNC:
            self._discarded(pending.popleft())
        return replacement
