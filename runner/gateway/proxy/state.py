"""The relay's state beyond the bookkeeping, and what both of its directions share:
the end of the connection, client reading paused and resumed, the outcomes handed
to the audit log, and whether the relay is quiescent (what the C lane asks).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from runner.gateway import wire
from runner.gateway.model import Outcome, ProxyBackend, Session
from runner.gateway.proxy.pending import IDLE, Bookkeeping

if TYPE_CHECKING:
    from runner.gateway.dbguard.link import GuardLink
    from runner.gateway.proxy.lane import LaneGlue

WRITE_HIGH_WATER = 1 << 20  # bytes buffered for a slow peer before the other side pauses
CLIENT_BACKLOG_MAX = 1 << 20  # client bytes queued for the connection task before pausing
BACKLOG = 1  # why client reading is paused: backlog while a statement is recorded ...
UPSTREAM_FULL = 2  # ... or the upstream is not taking bytes fast enough
_FLUSH = wire.message(wire.FLUSH)


def end_reason(error: Exception) -> str:
    """Why a connection ends when handling its bytes raised ``error``."""
    if isinstance(error, wire.ProtocolError):
        return f"client-protocol: {error}"
    if isinstance(error, ConnectionError | OSError):
        return "upstream-lost"  # a write to a socket that just went away
    return f"error: {type(error).__name__}"  # a bug: end this connection, not the listener


class RelayCore(Bookkeeping):
    """The relay's state beyond the bookkeeping, and what both directions share."""

    def __init__(
        self,
        backend: ProxyBackend,
        session: Session,
        client: asyncio.Transport,
        upstream: asyncio.Transport,
        txn: int,
        codec: str,
        literals_as_server: bool,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.session: Session | None = session  # None once the close is recorded
        self.ct = client
        self.ut = upstream
        self.txn = txn  # the server's last ReadyForQuery status
        self.codec = codec
        # The analysis reads '...' as PostgreSQL does with standard_conforming_strings
        # on (a backslash is an ordinary character). The server reports the setting
        # whenever it changes, however it was changed (SET, set_config, a function,
        # a role default): once it is off, nothing more is decided on this connection.
        self.literals_as_server = literals_as_server
        self.fatal_seen = False  # the upstream sent FATAL: it is about to close
        loop = asyncio.get_running_loop()
        self.client_closed: asyncio.Future[None] = loop.create_future()
        self.upstream_closed: asyncio.Future[None] = loop.create_future()
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
        # The C fast lane (runner/_native/_lane.c) for the steady state, when the backend offers
        # one, and its glue: it takes a message only when quiet() says this relay has
        # nothing going on.
        self.lane: Any = None
        self.lane_glue: LaneGlue | None = None
        # The client bytes are held (``hold``) until the server confirmed what the
        # statements ahead changed in the session's analysis (wait_for_confirms).
        self.confirm_wait = False
        # The database's server-side guard (runner.gateway.dbguard): None when the
        # gateway writes no marks for it; and the text the held statement is marked for.
        self.guard: GuardLink | None = None
        self.guard_text: str | None = None

    def end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        if self.confirm_wait:  # held for the server's word only: nothing to record
            self.confirm_wait = False
            self.hold = None
        if self.lane is not None:
            self.lane.end()  # what it has in flight is this relay's from now on
        if not self.ended.done():
            self.ended.set_result(None)

    def feed(self, data: bytes) -> None:
        raise NotImplementedError  # ClientToServer's

    def analysis_lost(self, error: Exception) -> None:
        # Decisions from here would rest on a state that is not the server's.
        self.end(f"error: the session's analysis could not follow ({type(error).__name__})")

    def wait_for_confirms(self, data: bytes, start: int, pos: int) -> None:
        """Hold the message at data[pos] (and what follows) until the server has
        answered the statements ahead of it that change the session's analysis: it is
        decided on what the server did, never on what was sent. What comes before it
        goes now, with a Flush: in the middle of an extended-protocol batch the server
        would otherwise keep its answers until the Sync still held here."""
        self.ut.write(data[start:pos] + _FLUSH)
        self.hold = (data, pos, pos, pos)
        self.confirm_wait = True

    def confirms_settled(self) -> None:
        if self.confirm_wait:
            self.confirm_wait = False
            hold = self.hold
            # Not in the upstream's callback that brought the answer: once it is done.
            asyncio.get_running_loop().call_soon(self._resume_confirmed, hold)

    def _resume_confirmed(self, hold: tuple[bytes, int, int, int] | None) -> None:
        if hold is None or self.hold is not hold or self.end_reason is not None:
            return
        self.hold = None
        data, _, pos, _ = hold
        rest = data[pos:]
        chunks = self.chunks
        if chunks:
            rest = b"".join([rest, *chunks])
            chunks.clear()
            self.backlog = 0
            if self.read_blocks & BACKLOG:
                self.unblock_client(BACKLOG)
        if rest:
            self.feed(rest)

    def block_client(self, why: int) -> None:
        if not self.read_blocks:
            with contextlib.suppress(Exception):
                self.ct.pause_reading()
        self.read_blocks |= why

    def unblock_client(self, why: int) -> None:
        self.read_blocks &= ~why
        if not self.read_blocks:
            with contextlib.suppress(Exception):
                self.ct.resume_reading()

    def submit_outcomes(self, owed: list[tuple[int, Outcome]]) -> None:
        if self.guard is not None and owed:
            owed = self.guard.outcomes(owed)  # what the guard saw, joined in
        if owed and self.session is not None:
            with contextlib.suppress(Exception):  # a failed write is logged by the writer
                self.backend.submit_outcomes(self.session, owed)

    def upstream_lost(self) -> None:
        if not self.upstream_closed.done():
            self.upstream_closed.set_result(None)
        self.end("upstream-fatal" if self.fatal_seen else "upstream-lost")

    def client_lost(self) -> None:
        self.end("client-lost")

    def quiet(self) -> bool:
        """Nothing is going on in this relay, outside a transaction, with string
        literals read as the analysis reads them: the lane may decide the next
        message from its caches."""
        return self.idle() and self.txn == IDLE and self.literals_as_analysis()

    def literals_as_analysis(self) -> bool:
        """The server reads this connection's texts as the analysis (and the lane's C
        scanner) does: standard_conforming_strings on, UTF-8."""
        return self.literals_as_server and self.codec == "utf-8"

    def idle(self) -> bool:
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
