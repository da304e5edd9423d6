"""Large texts are analysed in a worker thread, so the event loop keeps serving.

The analysis of a text costs time in proportion to its size (a 200 KiB expression
takes seconds); on the event loop that would stall every other connection of the
gateway. A Query or Parse whose message is larger than ``LARGE_TEXT_BYTES`` (and at
most ``gateway.max_statement_bytes``: past that the decision is one finding, made
at once) is decided by the backend in a worker; meanwhile the connection holds the
message and everything after it (its reading paused, as while an audit record is
written), and once the decision is back the relay reads the held bytes again from
that message on, where ``take`` hands the decision over. Order is preserved: the
messages before it were forwarded, nothing after it is read until it is decided.
Everything that depends on the relay's state (the encoding, the server's reading of
backslashes, the pipeline ahead) is still judged on the loop, at that second read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TYPE_CHECKING

from runner.gateway.model import StatementDecision
from runner.gateway.proxy.pending import IDLE
from runner.gateway.proxy.state import BACKLOG, end_reason

if TYPE_CHECKING:
    from runner.gateway.proxy.relay import ClientToServer

# Below this a text is analysed on the loop: a few milliseconds at most, less than a
# thread hand-off is worth; above it analysis takes tens of milliseconds and more.
LARGE_TEXT_BYTES = 64 * 1024
ANALYSING = 4  # why client reading is paused (beside state.BACKLOG and UPSTREAM_FULL)

# Two workers: large texts from many connections queue here rather than each taking
# a thread (and its share of the GIL) of its own.
_WORKERS = concurrent.futures.ThreadPoolExecutor(
    max_workers=2, thread_name_prefix="signoff-analysis"
)


class AsideAnalysis:
    """One connection's decision made off the loop: (raw text, decisions or error)."""

    __slots__ = ("ready",)

    def __init__(self) -> None:
        self.ready: tuple[bytes, list[StatementDecision] | BaseException] | None = None

    def take(self, raw: bytes) -> list[StatementDecision] | BaseException | None:
        """The decision made aside for ``raw`` (once), None when there is none."""
        ready = self.ready
        if ready is None:
            return None
        self.ready = None
        return ready[1] if ready[0] == raw else None

    def defers(
        self, relay: ClientToServer, data: bytes, start: int, pos: int, end: int, raw: bytes
    ) -> bool:
        """Whether the message data[pos:end] (text ``raw``) goes to a worker: then the
        bytes before it are forwarded, it and the rest are held and the client's
        reading paused, and True is returned (the relay stops reading)."""
        if self.ready is not None and self.ready[0] == raw:
            return False  # decided aside: the relay decides it now with that answer
        session = relay.session
        if session is None:
            return False
        if start < pos:
            relay.ut.write(data[start:pos])
        relay.hold = (data, pos, pos, end)
        relay.block_client(ANALYSING)
        backend = relay.backend
        codec = relay.codec
        in_transaction = relay.txn != IDLE

        def decide() -> list[StatementDecision]:
            decisions = backend.decide(session, raw.decode(codec), in_transaction=in_transaction)
            return decisions if type(decisions) is list else list(decisions)

        future = asyncio.get_running_loop().run_in_executor(_WORKERS, decide)
        future.add_done_callback(lambda done: self._decided(relay, raw, done))
        return True

    def _decided(
        self, relay: ClientToServer, raw: bytes, done: asyncio.Future[list[StatementDecision]]
    ) -> None:
        """Back on the loop: read the held bytes again, from the decided message on."""
        hold = relay.hold
        relay.hold = None
        relay.unblock_client(ANALYSING)
        if hold is None:
            return
        if relay.end_reason is not None:  # ended meanwhile: nothing was recorded
            if relay.hold_done is not None and not relay.hold_done.done():
                relay.hold_done.set_result(None)
            return
        if done.cancelled():
            self.ready = (raw, RuntimeError("the analysis was cancelled"))
        else:
            error = done.exception()
            self.ready = (raw, done.result() if error is None else error)
        data, pos, _, _ = hold
        rest = data[pos:]
        chunks = relay.chunks
        if chunks:
            rest = b"".join([rest, *chunks])
            chunks.clear()
            relay.backlog = 0
            if relay.read_blocks & BACKLOG:
                relay.unblock_client(BACKLOG)
        try:
            relay.feed(rest)
        except Exception as exc:  # feed ends the connection itself; this is belt and braces
            relay.end(end_reason(exc))
