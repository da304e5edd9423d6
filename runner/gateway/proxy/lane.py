"""The relay's side of the C fast lane (runner/_native/_lane.c).

The steady state (a simple Query whose literal mask the session already allowed
as a plain read, or the extended protocol's one-shot Parse, Bind, Describe,
Execute, Sync of such a text, answered without an error or a notice) runs in C,
in the connection's ``Lane``, when the backend offers one: the same entries,
written and awaited the same way. The lane decides a message from its caches
only while the relay is quiescent (``Relay.quiet``); a one-statement Query or
one-shot the relay decided itself is given to the lane to carry
(``LaneGlue.carries``, ``carries_one_shot``). It hands anything else over
(``_lane_adopt``, ``_lane_unhold``, ``_lane_resume``) before the relay sees a byte
that follows it.

``LaneHost`` is everything the C code calls on the object it is given as
``conn``: ``Lane.__init__`` looks each method up by name (``method_of``) and fails
when one is missing; tests/gateway/test_gateway_lane_host.py holds the names to the C
source. The names keep their leading underscore: they are the C code's to call,
nobody else's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from runner._native.loader import native as _native
from runner.gateway import wire
from runner.gateway.model import (
    AuditDecision,
    Outcome,
    ProxyBackend,
    Session,
    StatementDecision,
)
from runner.gateway.policy.analysis import effect_of
from runner.gateway.proxy.pending import (
    K_BIND,
    K_DESCRIBE,
    K_EXECUTE,
    K_PARSE,
    K_QUERY,
    K_SYNC,
    Pending,
    Portal,
    Prepared,
    ms,
)
from runner.gateway.proxy.state import BACKLOG, CLIENT_BACKLOG_MAX, end_reason

if TYPE_CHECKING:
    from runner.gateway.proxy.relay import Relay

_ALLOWED = AuditDecision.ALLOWED


class LaneHost(Protocol):
    """What runner/_native/_lane.c's Lane calls on its ``conn`` (each by name, from C).

    The lane calls these from inside its own ``client_data`` / ``upstream_data``
    (the transports' data_received) or from the audit queue's ``deliver`` (the
    writer's flush); an exception raised by one ends the connection
    (``_lane_failed``), except in ``_lane_failed`` itself (reported as unraisable).
    Besides these, the lane calls only what it was made with (``open_lane``): the
    client and upstream transports' ``write(bytes)``, and, through the audit queue,
    the writer's ``wake()``.
    """

    txn: int
    """The relay's transaction status (a ReadyForQuery status byte). C sets it when
    the ReadyForQuery of a statement the lane carried reports a status other than
    the one the relay had when it gave the statement over."""

    def _slow_client(self, data: bytes, /) -> bool:
        """Client bytes the lane does not take (not its shape, or the relay is not
        quiet), handled by the relay; returns whether the relay is quiet afterwards
        (the lane may take the next message itself only then)."""
        ...

    def _slow_upstream(self, data: bytes, /) -> bool:
        """Upstream bytes with no statement of the lane's in flight, or what follows
        the end of the lane's statement in a read, relayed by the relay; returns
        whether the relay is quiet afterwards."""
        ...

    def _lane_adopt(
        self,
        seq: int,
        t0: float,
        tag: str | None,
        at: float,
        decision: StatementDecision | None,
        answered: int,
        described: int,
        /,
    ) -> None:
        """The lane's statement in flight becomes the relay's, before the relay sees
        a byte that follows it: called when the server's answer is not the plain
        one (an error, a notice, ...), when the client pipelines, and when the
        connection ends. ``seq`` is its statement entry, ``t0`` when it was
        forwarded, ``tag`` its CommandComplete read at ``at`` (None: not yet);
        ``decision`` None for a simple Query, else the extended shape's, of which
        the server has ``answered`` Parse, Bind and (``described``) Describe.
        Returns None."""
        ...

    def _lane_unhold(
        self,
        seq: int | None,
        held: bytes,
        rest: list[bytes],
        decision: StatementDecision | None,
        execute_at: int,
        execute_end: int,
        described: int,
        /,
    ) -> None:
        """The lane's held statement (``held``, waiting for its entry) when its entry
        could not be written (``seq`` None) or the connection ended meanwhile: the
        relay does with it what it does with a statement it holds. ``rest`` is the
        client bytes that came meanwhile; for the extended shape (``decision``) the
        Execute is held[execute_at:execute_end]. Returns None."""
        ...

    def _lane_resume(self, rest: list[bytes], /) -> None:
        """Client bytes that came while the lane held a statement, once it was
        forwarded (and handed over): the relay goes on with them. Returns None."""
        ...

    def _lane_backlog(self, /) -> None:
        """The client bytes queued behind the lane's held statement passed the
        backlog limit: stop reading the client (``_lane_resume`` resumes). Returns
        None."""
        ...

    def _lane_failed(self, error: BaseException, /) -> None:
        """An exception in the lane's own work (or raised by a callback above): the
        connection ends as it would for one raised in the relay. Returns None."""
        ...

    def _lane_unnamed(self, decision: StatementDecision, /) -> object:
        """Before the relay next handles anything: the unnamed statement and portal
        (run) that the lane's last one-shot of ``decision`` left. The result is
        ignored."""
        ...


class LaneGlue:
    """The relay's LaneHost, and the relay's way of giving the lane what it decided."""

    def __init__(self, relay: Relay, lane: Any, entry_data: Callable[[StatementDecision], str]):
        self.relay = relay
        self.lane = lane
        self.entry_data = entry_data  # a decision's statement entry data, as the lane writes it

    @property
    def txn(self) -> int:
        return self.relay.txn

    @txn.setter
    def txn(self, status: int) -> None:
        self.relay.txn = status

    # the relay gives the lane what it decided ----------------------------------------------

    def carries(self, data: bytes, decisions: Sequence[StatementDecision]) -> bool:
        """Give the lane a Query the relay decided (``data`` is that one message, one
        allowed statement): it records, forwards and relays it as its own."""
        relay = self.relay
        if len(decisions) != 1 or decisions[0].blocked or not relay.idle():
            return False
        if effect_of(decisions[0]) is not None:
            return False  # its CommandComplete changes the session's analysis: the relay's
        entry_data = self.entry_data(decisions[0])
        return bool(self.lane.carry(data, entry_data, relay.txn, relay.literals_as_analysis()))

    def one_shot_text(self, data: bytes) -> bytes | None:
        """The Parse text when ``data`` is the extended protocol's one-shot shape (Parse,
        Bind, [Describe], Execute, Sync of the unnamed statement) and the lane could
        carry it now; None: the relay handles the messages one by one."""
        if not self.relay.idle():
            return None
        text: bytes | None = self.lane.one_shot(data)
        return text

    def carries_one_shot(self, data: bytes, decisions: list[StatementDecision]) -> bool:
        """Give the lane the one-shot shape whose text the relay decided: one allowed
        statement (no grant: a grant covers one run, and the unnamed statement could
        be run again without a Parse, which the relay counts)."""
        if len(decisions) != 1 or decisions[0].decision is not _ALLOWED:
            return False
        if effect_of(decisions[0]) is not None:
            return False  # (as in carries)
        relay = self.relay
        entry_data = self.entry_data(decisions[0])
        return bool(
            self.lane.carry_one_shot(
                data, decisions[0], entry_data, relay.txn, relay.literals_as_analysis()
            )
        )

    # LaneHost ---------------------------------------------------------------------------------

    def _slow_client(self, data: bytes, /) -> bool:
        relay = self.relay
        relay.client_bytes(data)
        return relay.quiet()

    def _slow_upstream(self, data: bytes, /) -> bool:
        relay = self.relay
        relay.upstream_data(data)
        return relay.quiet()

    def _lane_adopt(
        self,
        seq: int,
        t0: float,
        tag: str | None,
        at: float,
        decision: StatementDecision | None = None,
        answered: int = 0,
        described: int = 0,
        /,
    ) -> None:
        relay = self.relay
        relay.settled = False  # its ReadyForQuery has not come yet
        done = (
            None
            if tag is None
            else Outcome(
                tag=tag, rows=wire.rows_from_tag(tag), duration_ms=ms(t0, at), status="completed"
            )
        )
        if decision is None:
            entry = Pending(K_QUERY)
            entry.seqs = [seq]
            entry.results = [] if done is None else [done]
            entry.t0 = t0 if done is None else at
            relay.pending.appendleft(entry)  # sent before anything the relay has pending
            return
        entries, execute = self._extended(decision, described)
        execute.seqs = [seq]
        execute.t0 = t0
        if done is not None:  # CommandComplete came: Execute is answered
            entries.remove(execute)
            relay.batch.append((seq, done))
        del entries[:answered]
        relay.pending.extendleft(reversed(entries))

    def _lane_unhold(
        self,
        seq: int | None,
        held: bytes,
        rest: list[bytes],
        decision: StatementDecision | None,
        execute_at: int,
        execute_end: int,
        described: int,
        /,
    ) -> None:
        relay = self.relay
        seqs = None if seq is None else [seq]
        relay.chunks[:0] = rest
        relay.backlog += sum(len(chunk) for chunk in rest)
        if decision is None:
            entry = Pending(K_QUERY)
            entry.results = []
            relay.hold = (held, 0, 0, len(held))
            relay.recorded(seqs, lambda s: relay.query_recorded(entry, s))
            return
        entries, execute = self._extended(decision, described)
        relay.pending.extend(entries[: entries.index(execute)])
        decisions = list(execute.decisions)
        relay.hold = (held, 0, execute_at, execute_end)
        relay.recorded(seqs, lambda s: relay.execute_recorded(execute, decisions, s))

    def _extended(
        self, decision: StatementDecision, described: int
    ) -> tuple[list[Pending], Pending]:
        """The lane's extended shape as the relay would have handled it: the unnamed
        statement and portal it makes (the portal run), and the entries of Parse, Bind,
        [Describe], Execute and Sync, in order (Execute's is returned too)."""
        relay = self.relay
        parse = Pending(K_PARSE)
        parse.name = b""
        parse.prev = relay.statements.get(b"")
        bind = Pending(K_BIND)
        bind.name = b""
        bind.prev = relay.portals.get(b"")
        portal = self._lane_unnamed(decision)
        parse.info = portal.statement
        parse.decisions = decisions = portal.decisions
        bind.info = portal
        execute = Pending(K_EXECUTE)
        execute.copy_ends = relay.copy_ends
        execute.decisions = decisions
        sync = Pending(K_SYNC)
        sync.copy_ends = relay.copy_ends
        entries = [parse, bind]
        if described:
            entries.append(Pending(K_DESCRIBE))
        entries += [execute, sync]
        return entries, execute

    def _lane_unnamed(self, decision: StatementDecision, /) -> Portal:
        relay = self.relay
        info = Prepared([decision], False)
        portal = Portal(info)
        portal.ran = True
        relay.statements[b""] = info
        relay.portals[b""] = portal
        return portal

    def _lane_resume(self, rest: list[bytes], /) -> None:
        relay = self.relay
        if relay.read_blocks & BACKLOG:
            relay.unblock_client(BACKLOG)
        relay.feed(b"".join(rest))

    def _lane_backlog(self, /) -> None:
        self.relay.block_client(BACKLOG)

    def _lane_failed(self, error: BaseException, /) -> None:
        self.relay.end(end_reason(error) if isinstance(error, Exception) else "error: lane")


def open_lane(relay: Relay, backend: ProxyBackend, session: Session) -> LaneGlue | None:
    """The connection's fast lane and its glue (``glue.lane``), when the C extension
    is there and the backend offers one for the session."""
    if _native is None:
        return None
    support = backend.fast_lane(session)
    if support is None:
        return None
    glue = LaneGlue(relay, None, support.entry_data)
    glue.lane = _native.Lane(
        glue,
        relay.ct.write,
        relay.ut.write,
        support.queue,
        session.id,
        support.shapes,
        support.texts,
        CLIENT_BACKLOG_MAX,
    )
    return glue


if TYPE_CHECKING:

    def _implements_lane_host(glue: LaneGlue) -> LaneHost:
        return glue  # checked by mypy: LaneGlue is everything the C code calls
