"""The relay: the steady state of a connection, client -> server and server -> client.

After the startup both sockets get a small protocol whose data_received does the
work (no reader buffers, no task switch per message). Upstream -> client runs
entirely in the upstream transport's callback. Client -> upstream runs in the
client transport's callback until a statement needs its audit entries: the bytes
before it are forwarded, the rest is held (client bytes arriving meanwhile are
queued), and the audit log's commit calls back into the relay, which forwards
the statement and goes on. The connection's task only waits for the end
(``ended``) and closes up.

* client -> upstream: every message is parsed (type + length). A simple Query
  and a Parse are decided; an Execute of an allowed statement is recorded
  (awaited: durable before anything is forwarded). A blocked statement is never
  forwarded: a text that fails at parse time upstream ("SIGNOFF BLOCKED") goes
  in its place, so the server's state (failed transaction block, extended
  protocol skip-until-Sync) is exactly what a real error makes it, and the
  server's error for it is replaced by the gateway's own (SQLSTATE 42501).
* upstream -> client (``results.ServerToClient``): bytes are forwarded untouched,
  in large writes; only the message headers are read, and the bodies of
  CommandComplete, ErrorResponse, ReadyForQuery and ParameterStatus. The FIFO of
  pending.Bookkeeping lines responses up with statements, pipelined or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from runner.gateway import wire
from runner.gateway.masking.relayside import BLIND, open_masker
from runner.gateway.model import Outcome, StatementDecision
from runner.gateway.proxy.aside import LARGE_TEXT_BYTES, AsideAnalysis
from runner.gateway.proxy.events import record_event
from runner.gateway.proxy.pending import (
    IDLE,
    K_DESCRIBE,
    K_QUERY,
    K_SYNC,
    Pending,
    refusal,
)
from runner.gateway.proxy.reading import ReadingWatch
from runner.gateway.proxy.results import ServerToClient
from runner.gateway.proxy.state import (
    BACKLOG,
    CLIENT_BACKLOG_MAX,
    UPSTREAM_FULL,
    RelayCore,
    end_reason,
)

if TYPE_CHECKING:
    from runner.gateway.masking.relayside import ConnectionMasker
    from runner.gateway.proxy.lane import LaneGlue

_MAX_CLIENT_MESSAGE = wire.MAX_MESSAGE_LENGTH
_U32 = struct.Struct("!I")
_COMMAND_COMPLETE = wire.COMMAND_COMPLETE
_READY_FOR_QUERY = wire.READY_FOR_QUERY
_ERROR_RESPONSE = wire.ERROR_RESPONSE
# Client messages decided (or decided again) when they arrive.
_DECIDED = frozenset({wire.QUERY, wire.PARSE, wire.BIND, wire.EXECUTE})


class ClientSide(asyncio.Protocol):
    """The client socket during the relay: bytes are handled in this callback (by
    the connection's C lane first, when it has one)."""

    def __init__(self, relay: Relay, lane: Any) -> None:
        self.relay = relay
        self.data_received = (  # type: ignore[method-assign]
            relay.client_bytes if lane is None else lane.client_data
        )

    def data_received(self, data: bytes) -> None:  # replaced per instance
        self.relay.client_bytes(data)

    def eof_received(self) -> bool:
        return False  # close the transport: a client that stops sending is gone

    def connection_lost(self, exc: Exception | None) -> None:
        relay = self.relay
        if not relay.client_closed.done():
            relay.client_closed.set_result(None)
        relay.client_lost()

    def pause_writing(self) -> None:  # the client is slow to read results
        with contextlib.suppress(Exception):
            self.relay.ut.pause_reading()

    def resume_writing(self) -> None:
        with contextlib.suppress(Exception):
            self.relay.ut.resume_reading()


class UpstreamSide(asyncio.Protocol):
    """The upstream socket during the relay: bytes are relayed in this callback."""

    def __init__(self, relay: Relay, lane: Any) -> None:
        self.relay = relay
        self.data_received = (  # type: ignore[method-assign]
            relay.upstream_data if lane is None else lane.upstream_data
        )

    def data_received(self, data: bytes) -> None:  # replaced per instance
        self.relay.upstream_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.upstream_lost()

    def pause_writing(self) -> None:  # the upstream is slow to take client bytes
        self.relay.block_client(UPSTREAM_FULL)

    def resume_writing(self) -> None:
        self.relay.unblock_client(UPSTREAM_FULL)


class ClientToServer(RelayCore):
    """Client bytes: decided, recorded, forwarded (or refused)."""

    masker: ConnectionMasker | None = None  # a masked session's (see ServerToClient)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading = ReadingWatch()  # what ahead of a backslash text could change it
        self.aside = AsideAnalysis()  # a large text's decision, made in a worker

    def query_recorded(self, entry: Pending, seqs: list[int] | None) -> bytes | None:
        was_settled = self.settled
        replacement = super().query_recorded(entry, seqs)
        if replacement is None:  # forwarded as it is
            self.reading.forwarded(was_settled, entry.decisions)
        return replacement

    def execute_recorded(
        self, entry: Pending, decisions: list[StatementDecision], seqs: list[int] | None
    ) -> bytes | None:
        was_settled = self.settled
        replacement = super().execute_recorded(entry, decisions, seqs)
        if replacement is None:
            self.reading.forwarded(was_settled, decisions)
        return replacement

    def client_bytes(self, data: bytes) -> None:
        """Client bytes, or queued while a statement waits for its audit record."""
        if self.hold is None:
            if self.end_reason is None:
                self.feed(data)
            return
        self.chunks.append(data)
        self.backlog += len(data)
        if self.backlog > CLIENT_BACKLOG_MAX:
            self.block_client(BACKLOG)

    def feed(self, data: bytes) -> None:
        """Handle a run of client bytes (in a callback): any error ends the connection."""
        try:
            ended = self._client_data(data)
        except Exception as exc:
            ended = end_reason(exc)
        if ended is not None:
            self.end(ended)

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
        if self.guard is not None:  # the text to mark, when the guard must let it act
            self.guard_text = self._guard_text(data, pos, end, decisions)
        self.backend.submit_statements(
            self.session, decisions, lambda seqs: self.recorded(seqs, then)
        )

    def recorded(
        self, seqs: list[int] | None, then: Callable[[list[int] | None], bytes | None]
    ) -> None:
        """The held statement's entries are durable (or failed): forward, go on."""
        hold = self.hold
        self.hold = None
        if hold is None:
            return
        if self.end_reason is not None:  # the connection ended meanwhile: not run
            if seqs:
                self.submit_outcomes([(seq, Outcome(status="not-run")) for seq in seqs])
            if self.hold_done is not None and not self.hold_done.done():
                self.hold_done.set_result(None)  # the close may go on
            return
        try:
            replacement = then(seqs)
        except Exception as exc:
            self.end(end_reason(exc))
            return
        guard, mark = self.guard, self.guard_text
        self.guard_text = None
        if guard is not None and guard.then_forward(
            mark if replacement is None and seqs else None,
            seqs or [],
            functools.partial(self._forward, hold, replacement),
        ):
            self.hold = hold  # still held: the guard's mark first
            return
        self._forward(hold, replacement)

    def _forward(self, hold: tuple[bytes, int, int, int], replacement: bytes | None) -> None:
        """The held message goes upstream (or ``replacement`` in its place); what
        arrived behind it is handled next."""
        self.hold = None
        if self.end_reason is not None:  # ended while the guard's mark was written
            if self.hold_done is not None and not self.hold_done.done():
                self.hold_done.set_result(None)
            return
        data, start, pos, end = hold
        try:
            if replacement is None:
                self.ut.write(data[start:end])
            else:
                self.ut.write(data[start:pos] + replacement)
        except Exception as exc:
            self.end(end_reason(exc))
            return
        rest = data[end:]
        chunks = self.chunks
        if chunks:
            rest = b"".join([rest, *chunks])
            chunks.clear()
            self.backlog = 0
            if self.read_blocks & BACKLOG:
                self.unblock_client(BACKLOG)
        if rest:
            self.feed(rest)

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
            if self.unconfirmed and kind in _DECIDED:
                # Decided on what the statements ahead did: once the server has said.
                self.wait_for_confirms(data, start, pos)
                return None
            if kind == wire.QUERY:
                raw = data[pos + 5 : end - 1]
                if end - pos > LARGE_TEXT_BYTES and self.aside.defers(
                    self, data, start, pos, end, raw
                ):
                    return None  # decided in a worker; read again from here when it is
                decisions = self._decide(raw)
                entry = Pending(K_QUERY)
                entry.results = []
                entry.decisions = decisions
                if decisions:
                    glue = self.lane_glue
                    if (
                        start == pos == 0
                        and end == n
                        and glue is not None
                        # not one the guard must mark first (its lane knows no marks)
                        and (self.guard is None or not self.guard.wants(decisions))
                        and glue.carries(data, decisions)
                    ):
                        return None
                    self._hold_for_record(
                        data,
                        start,
                        pos,
                        end,
                        decisions,
                        functools.partial(self.query_recorded, entry),
                    )
                    return None
                entry.t0 = time.perf_counter()  # an empty query: nothing to record
                pending.append(entry)
            elif kind == wire.COPY_DATA or kind == wire.FLUSH:
                pass
            elif kind == wire.PARSE:
                if end - pos > LARGE_TEXT_BYTES and self.aside.defers(
                    self, data, start, pos, end, wire.parse_parse(data[pos + 5 : end]).text
                ):
                    return None
                decided = None
                glue = self.lane_glue
                if pos == 0 and glue is not None:
                    text = glue.one_shot_text(data)
                    if text is not None:
                        decided = self._decide(text)
                        if (
                            self.guard is None or not self.guard.wants(decided)
                        ) and glue.carries_one_shot(data, decided):
                            return None
                message = wire.parse_parse(data[pos + 5 : end])
                if decided is None:
                    decided = self._decide(message.text)
                recording = self._on_parse(message, decided)
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
                entry = Pending(K_SYNC)
                entry.copy_ends = self.copy_ends
                pending.append(entry)
            elif kind == wire.DESCRIBE:
                described = Pending(K_DESCRIBE)
                if self.masker is not None:  # which statement's result it will describe
                    described.info = self.masker.described_target(self, data[pos + 5 : end])
                pending.append(described)
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

    def _guard_text(
        self, data: bytes, pos: int, end: int, decisions: Sequence[StatementDecision]
    ) -> str | None:
        """What ``current_query()`` will show while the held message runs, when the
        guard must let it act (runner.gateway.dbguard.link); else None."""
        assert self.guard is not None
        if not self.guard.wants(decisions):
            return None
        kind = data[pos]
        if kind == wire.QUERY:
            return data[pos + 5 : end - 1].decode(self.codec, "replace")
        if kind == wire.EXECUTE:
            portal = self.portals.get(wire.parse_execute(data[pos + 5 : end])[0])
            return None if portal is None else portal.text.decode(self.codec, "replace")
        return None  # a Parse is held only when it is refused

    def _decide(self, raw: bytes) -> list[StatementDecision]:
        assert self.session is not None
        ready = self.aside.take(raw)
        try:
            text = raw.decode(self.codec)
        except (UnicodeDecodeError, LookupError):
            return [
                refusal(
                    raw.decode("utf-8", "replace"),
                    "the statement text is not valid in the client encoding; refused",
                )
            ]
        if not self.literals_as_server:
            return [
                refusal(
                    text,
                    "standard_conforming_strings is off on this connection, so the server "
                    "reads backslashes in string literals differently from the gateway's "
                    "analysis; refused: reconnect (it is on by default)",
                )
            ]
        if b"\\" in raw and not self._settled() and self.reading.refuses(text):
            return [
                refusal(
                    text,
                    "a text with a backslash in a '...' literal sent before the statements "
                    "ahead of it have answered, one of which could change "
                    "standard_conforming_strings: with it off, the server would read its "
                    "string literals differently from the gateway's analysis; refused: "
                    "send it once they have answered, write the literal as E'...', or "
                    "pass the value as a parameter",
                )
            ]
        try:
            if ready is not None:  # decided in a worker (a large text: runner.gateway.proxy.aside)
                if isinstance(ready, BaseException):
                    raise ready
                return ready
            decisions = self.backend.decide(self.session, text, in_transaction=self.txn != IDLE)
            return decisions if type(decisions) is list else list(decisions)
        except Exception as exc:
            return [
                refusal(
                    text,
                    "the gateway's policy failed on this statement "
                    f"({type(exc).__name__}); refused",
                )
            ]

    def _on_function_call(self) -> bytes:
        # Nothing is forwarded, so nothing waits for the event's record.
        task = asyncio.get_running_loop().create_task(
            record_event(self.backend, self.session, "function-call-refused")
        )
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return self._refused_function_call()


class Relay(ClientToServer, ServerToClient):
    """One connection's relay, both directions (the connection's protocols call it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.masker = open_masker(self.backend, self.session)
        if self.masker is not None:
            self.row_mask = BLIND  # no rows without a description

    def attach_lane(self, glue: LaneGlue) -> None:
        """From now on the C lane takes what it can (see runner.gateway.proxy.lane)."""
        self.lane = glue.lane
        self.lane_glue = glue
        glue.lane.quiet = self.quiet()
