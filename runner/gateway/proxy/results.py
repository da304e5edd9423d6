"""Upstream -> client: the server's answers relayed back, in the upstream transport's callback.

Bytes are forwarded untouched, in large writes; only the message headers are read,
and the bodies of CommandComplete, ErrorResponse, ReadyForQuery and ParameterStatus
(and, for a masked session, what its masker rewrites). The FIFO of
pending.Bookkeeping lines responses up with statements, pipelined or not. The
other direction is ``relay.ClientToServer``; ``relay.Relay`` is both.
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

from runner.gateway import wire
from runner.gateway.model import Outcome
from runner.gateway.proxy.pending import (
    K_BIND,
    K_CLOSE,
    K_DESCRIBE,
    K_EXECUTE,
    K_PARSE,
    K_QUERY,
    K_SYNC,
    blocked_outcome,
    ms,
)
from runner.gateway.proxy.reading import ReadingWatch
from runner.gateway.proxy.state import (
    RelayCore,
)

if TYPE_CHECKING:
    from runner.gateway.masking.relayside import ConnectionMasker
    from runner.gateway.masking.rewrite import RowMask

_U32 = struct.Struct("!I")
_DATA_ROW = wire.DATA_ROW
_ROW_DESCRIPTION = wire.ROW_DESCRIPTION
_COMMAND_COMPLETE = wire.COMMAND_COMPLETE
_READY_FOR_QUERY = wire.READY_FOR_QUERY
_ERROR_RESPONSE = wire.ERROR_RESPONSE
_NOTICE_RESPONSE = wire.NOTICE_RESPONSE
# Upstream messages whose body the relay reads (all small); the others pass through.
_NEED_BODY = frozenset(
    {_COMMAND_COMPLETE, _READY_FOR_QUERY, _ERROR_RESPONSE, wire.PARAMETER_STATUS}
)
# Upstream messages a masked session's masker reads whole (runner.gateway.masking).
_MASKER_READS = frozenset(
    {wire.NOTICE_RESPONSE, wire.COPY_OUT_RESPONSE, wire.COPY_DATA, wire.PORTAL_SUSPENDED}
)


class ServerToClient(RelayCore):
    """Upstream bytes: relayed untouched, read enough to line answers up (a masked
    session's: see runner.gateway.masking.relayside)."""

    reading: ReadingWatch  # made by ClientToServer: the two halves are one Relay

    # Masking: the connection's masker (None: the session's results are not masked)
    # and the current result's RowMask (None: its rows go by untouched).
    masker: ConnectionMasker | None = None
    row_mask: RowMask | None = None

    def upstream_data(self, data: bytes) -> None:
        """Relay upstream bytes to the client (in the upstream transport's callback)."""
        if self.detached:
            return
        client = self.ct
        if client.is_closing():
            # The client has gone and its close is under way: writing to it raises
            # (uvloop: "the handler is closed"); the connection's end records what
            # was in flight.
            return
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
                    mask = self.row_mask
                    if mask is not None:  # masked: whole rows, rewritten
                        if end > n:
                            break
                        stop, rows = mask.rewrite(data, pos, n)
                        if pieces is None:
                            pieces = []
                        pieces.append(data[start:pos])
                        pieces.append(rows)
                        start = pos = stop
                        continue
                    if end > n:
                        self.up_passthrough = end - n
                        pos = n
                        break
                    pos = end
                    continue
                if kind == _ROW_DESCRIPTION and self.masker is not None:
                    if end > n:
                        break
                    self.masker.described(self, data, pos + 5, end)
                if kind == _ROW_DESCRIPTION and end <= n:
                    pending = self.pending
                    if pending and pending[0].kind == K_DESCRIBE:
                        pending.popleft()
                    pos = end
                    continue
                if length < 4:
                    raise wire.ProtocolError("invalid message length from the upstream")
                if kind == _NOTICE_RESPONSE and self.guard is not None and self.guard.active:
                    if end > n:
                        break
                    if self.guard.notice(data[pos + 5 : end], self._guard_seq()):
                        # The guard's account of a marked statement: recorded, not relayed.
                        if pieces is None:
                            pieces = []
                        pieces.append(data[start:pos])
                        start = pos = end
                        continue
                if kind in _NEED_BODY:
                    if end > n:
                        break
                    if kind == _COMMAND_COMPLETE:
                        if self.masker is not None:
                            self.masker.complete(self, data, pos + 5, end)
                        else:
                            self._on_complete(data, pos + 5, end)
                    elif kind == _READY_FOR_QUERY:
                        self._on_ready(data[pos + 5])
                    elif kind == _ERROR_RESPONSE:
                        replacement = self._on_error(data[pos + 5 : end])
                        if replacement is None and self.masker is not None:
                            replacement = self.masker.scrub_error(self, data[pos + 5 : end])
                        if replacement is not None:
                            if pieces is None:
                                pieces = []
                            pieces.append(data[start:pos])
                            pieces.append(replacement)
                            start = end
                    else:
                        self._on_parameter_status(data[pos + 5 : end])
                elif self.masker is not None and kind in _MASKER_READS:
                    if end > n:
                        break
                    self._on_header(kind)
                    replacement = self.masker.message(self, kind, data[pos + 5 : end])
                    if replacement is not None:
                        if pieces is None:
                            pieces = []
                        pieces.append(data[start:pos])
                        pieces.append(replacement)
                        start = end
                else:
                    self._on_header(kind)
                    if end > n:
                        self.up_passthrough = end - n
                        pos = n
                        break
                pos = end
        except wire.ProtocolError:
            self.ut.abort()
            self.end("protocol: the upstream broke the protocol")
            return
        if pieces is not None:
            pieces.append(data[start:pos])
            client.write(b"".join(pieces))
        elif pos:
            client.write(data if pos == n else data[:pos])
        if pos < n and not self.up_passthrough:
            self.up_leftover = data[pos:]

    def _guard_seq(self) -> int | None:
        """The statement whose answer is arriving (the guard's notices are its)."""
        pending = self.pending
        if not pending:
            return None
        head = pending[0]
        if head.kind == K_QUERY:
            done = len(head.results)
            return head.seqs[done] if done < len(head.seqs) else None
        return head.seqs[0] if head.kind == K_EXECUTE and head.seqs else None

    def _on_parameter_status(self, body: bytes) -> None:
        name, value = wire.parse_parameter_status(body)
        if name == "standard_conforming_strings":
            self.literals_as_server = value == "on"
        elif name == "client_encoding":
            codec = wire.python_codec(value)
            self.codec = "utf-8" if codec in (None, "ascii") else codec

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

    def _on_ready(self, status: int) -> None:
        self.txn = status
        pending = self.pending
        if self.discarding:
            self.discarding = False
            while pending:
                entry = pending.popleft()
                if entry.kind == K_SYNC:
                    break
                self.statement_left = True
                self._discarded(entry)
        else:
            while pending:
                entry = pending.popleft()
                if entry.kind == K_QUERY:
                    self.statement_left = True
                    self._finish_query(entry)
                    break
                if entry.kind == K_SYNC:
                    break
                self.statement_left = True
                self._discarded(entry)
        if not self.settled and self.statement_left:
            self.statement_left = False
            if not any(entry.kind == K_QUERY or entry.kind == K_EXECUTE for entry in pending):
                self.settled = True  # whatever changed a setting has been reported by now
                self.reading.settled()
        if self.batch:
            # Written with the next commit of the audit log, not waited for.
            self.submit_outcomes(self.batch)
            self.batch = []
        self.confirm_ready(status)

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
        self.confirm_failed(head)
        now = time.perf_counter()
        if head.kind == K_QUERY:
            if head.blocked_error is not None:
                return head.blocked_error
            if len(head.results) < len(head.seqs):
                head.results.append(
                    Outcome(sqlstate=sqlstate, status="failed", duration_ms=ms(head.t0, now))
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
                self.batch.append((seq, blocked_outcome(head, i)))
            # A failed Parse leaves a named statement as it was; the unnamed one is gone.
            self._revert(self.statements, head, head.prev if head.name else None)
        elif head.kind == K_BIND:
            self._revert(self.portals, head, head.prev if head.name else None)
        elif head.kind == K_EXECUTE:
            duration = ms(head.t0, now)
            for i, seq in enumerate(head.seqs):
                if replacement is not None:
                    self.batch.append((seq, blocked_outcome(head, i)))
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
