"""The audit chain: verifying it, writing it with group commit, and reading it as records.

* ``verify_chain`` walks entries in seq order and reports the first break: an
  entry whose hash does not match its contents, a ``prev_hash`` that does not
  link, a missing seq. Statement entries with no outcome are ``incomplete``
  (the gateway stopped between forwarding and recording the result): reported,
  never a chain failure.
* ``AuditWriter`` is what the proxy awaits before forwarding a statement: one
  background thread drains every queued request and writes them with a single
  ``store.append`` (one transaction), so under load many statements share one
  commit and each caller still gets its own entries, in its own order.
* ``merge_records`` is the DESIGN.md audit-record view (one record per
  statement, its outcome merged in, plus session events).
* ``statement_entry`` / ``outcome_entry`` / ``event_entry`` build entries in
  the shape ``merge_records`` reads (statement and outcome data as canonical
  JSON text: the proxy makes two per statement).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.gateway.model import (
    GENESIS_HASH,
    AuditEntry,
    CanonicalJson,
    EntryKind,
    NewEntry,
    Outcome,
    StatementDecision,
    StateStore,
    entry_hash,
)
from runner.gateway.store import canonical_data
from runner.plan.model import canonical_json
from runner.speedups import native as _native

_log = logging.getLogger("signoff.gateway.audit")
_json_text: Callable[[str], str] = json.encoder.encode_basestring

# -- verification -----------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    count: int  # entries read
    first_bad_seq: int | None = None
    problem: str | None = None  # one line, e.g. "entry 17: hash does not match its contents"
    incomplete: tuple[int, ...] = ()  # statement entries with no outcome entry
    last_seq: int = 0  # the last entry read (0: none)
    last_hash: str = GENESIS_HASH

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "incomplete": list(self.incomplete),
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
        }


def _missing(expected: int, found: int) -> str:
    if found == expected + 1:
        return f"seq {expected} missing (gap after {expected - 1})"
    return f"seqs {expected}-{found - 1} missing (gap after {expected - 1})"


def verify_chain(
    entries: Iterable[AuditEntry], *, after: tuple[int, str] | None = None
) -> ChainReport:
    """Check that ``entries`` (in seq order) form one unbroken chain.

    By default the chain must start at seq 1 with the genesis hash; ``after``
    = (seq, hash) of an already-trusted entry verifies a tail that follows it.
    Deleting the newest entries cannot be seen from the chain alone: compare
    ``last_seq``/``last_hash`` with a copy kept elsewhere (the signed bundle).
    """
    prev_seq, prev_hash = after if after is not None else (0, GENESIS_HASH)
    count = 0
    bad_seq: int | None = None
    problem: str | None = None
    statements: dict[int, bool] = {}  # statement seq -> has an outcome
    for entry in entries:
        count += 1
        if bad_seq is None:
            expected = prev_seq + 1
            if entry.seq > expected:
                bad_seq, problem = expected, _missing(expected, entry.seq)
            elif entry.seq < expected:
                bad_seq = entry.seq
                problem = f"entry {entry.seq}: out of order (after entry {prev_seq})"
            elif entry_hash(entry.prev_hash, entry.body()) != entry.hash:
                bad_seq = entry.seq
                problem = f"entry {entry.seq}: hash does not match its contents"
            elif entry.prev_hash != prev_hash:
                bad_seq = entry.seq
                if prev_seq == 0:
                    problem = f"entry {entry.seq}: prev_hash is not the genesis hash"
                else:
                    problem = f"entry {entry.seq}: prev_hash does not link to entry {prev_seq}"
            elif entry.kind is EntryKind.OUTCOME and not _outcome_links(entry, statements, after):
                bad_seq = entry.seq
                problem = (
                    f"entry {entry.seq}: outcome refers to entry {entry.ref}, "
                    "which is not an earlier statement"
                )
            prev_seq, prev_hash = entry.seq, entry.hash
        if entry.kind is EntryKind.STATEMENT:
            statements.setdefault(entry.seq, False)
        elif entry.kind is EntryKind.OUTCOME and entry.ref in statements:
            statements[entry.ref] = True
    return ChainReport(
        ok=bad_seq is None,
        count=count,
        first_bad_seq=bad_seq,
        problem=problem,
        incomplete=tuple(seq for seq, done in statements.items() if not done),
        last_seq=prev_seq,
        last_hash=prev_hash,
    )


def _outcome_links(
    entry: AuditEntry, statements: Mapping[int, bool], after: tuple[int, str] | None
) -> bool:
    if entry.ref is None:
        return False
    if entry.ref in statements:
        return True
    # A tail verified after a trusted entry may complete a statement before it.
    return after is not None and entry.ref <= after[0]


# -- building entries --------------------------------------------------------------------


# -- entry data -----------------------------------------------------------------
# The proxy records two entries per statement, each before or right after it runs:
# their data is written straight as canonical JSON text (what canonical_json of the
# dict below gives, byte for byte; tests/test_gateway_entry_data.py checks both) rather
# than as a dict the store would encode again.


def statement_data(database: str, decision: StatementDecision) -> dict[str, Any]:
    """A statement entry's data. The principal is recorded once, in the chained
    session-created entry of the session; merge_records joins it into each record."""
    grant = decision.grant
    return {
        "database": database,
        "text": decision.text,
        "sha256": decision.sha256,
        "fingerprint": decision.fingerprint,
        "findings": [dict(f) for f in decision.findings],
        "decision": decision.decision.value,
        "reason": decision.reason,
        "grant": None
        if grant is None
        else {"id": grant.id, "approver": grant.approver, "evidence_url": grant.evidence_url},
        "masked_columns": [],
    }


def statement_data_json(database: str, decision: StatementDecision) -> CanonicalJson:
    """``canonical_json(statement_data(database, decision))``, assembled directly."""
    if decision.findings or decision.grant is not None:  # rarer: the general encoder
        return CanonicalJson(canonical_json(statement_data(database, decision)))
    reason = decision.reason
    return CanonicalJson(
        f'{{"database":{_json_text(database)},"decision":"{decision.decision.value}",'
        f'"findings":[],"fingerprint":"{decision.fingerprint}","grant":null,'
        f'"masked_columns":[],"reason":{"null" if reason is None else _json_text(reason)},'
        f'"sha256":"{decision.sha256}","text":{_json_text(decision.text)}}}'
    )


def outcome_data(outcome: Outcome) -> dict[str, Any]:
    return {
        "outcome": outcome.tag if outcome.sqlstate is None else outcome.sqlstate,
        "tag": outcome.tag,
        "sqlstate": outcome.sqlstate,
        "rows": outcome.rows,
        "duration_ms": round(float(outcome.duration_ms), 3),
        "status": outcome.status,
    }


def _json_opt(value: str | None) -> str:
    return "null" if value is None else _json_text(value)


def outcome_data_json(outcome: Outcome) -> CanonicalJson:
    """``canonical_json(outcome_data(outcome))``, assembled directly: everything after
    the duration is the same for every run of a statement, so it is made once."""
    tail = _outcome_tails.get((outcome.tag, outcome.rows, outcome.sqlstate, outcome.status))
    if tail is None:
        tail = _outcome_tail(outcome)
    return CanonicalJson(f'{{"duration_ms":{float(round(outcome.duration_ms, 3))!r},{tail}')


_outcome_tails: dict[tuple[str | None, int | None, str | None, str], str] = {}


def _outcome_tail(outcome: Outcome) -> str:
    tag, sqlstate, rows = outcome.tag, outcome.sqlstate, outcome.rows
    tag_text = _json_opt(tag)
    tail = (
        f'"outcome":{tag_text if sqlstate is None else _json_text(sqlstate)},'
        f'"rows":{"null" if rows is None else int(rows)},"sqlstate":{_json_opt(sqlstate)},'
        f'"status":{_json_text(outcome.status)},"tag":{tag_text}}}'
    )
    if len(_outcome_tails) < 4096:  # tags repeat ("SELECT 1"); row counts may not
        _outcome_tails[(tag, rows, sqlstate, outcome.status)] = tail
    return tail


_PREFIX_END = '","text":""}'


def statement_data_prefix(database: str, decision: StatementDecision) -> str:
    """``statement_data_json`` of ``decision`` up to the value of its sha256: the C lane
    (runner/_lane.c) completes it with the sha256 and the text of each statement
    with the same literal mask (the keys are sorted: "sha256" and "text" come last)."""
    empty = statement_data_json(database, decision._replace(text="", sha256=""))
    if not empty.endswith(_PREFIX_END):
        raise ValueError("statement data does not end with its sha256 and text")
    return empty[: -len(_PREFIX_END)]


def statement_entry(session_id: str, database: str, decision: StatementDecision) -> NewEntry:
    """The entry written before a statement is forwarded (or refused)."""
    return NewEntry(EntryKind.STATEMENT, session_id, statement_data_json(database, decision))


def outcome_entry(session_id: str | None, statement_seq: int, outcome: Outcome) -> NewEntry:
    """The entry that completes statement entry ``statement_seq``."""
    return NewEntry(EntryKind.OUTCOME, session_id, outcome_data_json(outcome), ref=statement_seq)


def event_entry(session_id: str | None, event: str, **data: Any) -> NewEntry:
    """A session event: exchanged, refused, authenticated, auth failed, revoked, closed..."""
    return NewEntry(kind=EntryKind.SESSION, session_id=session_id, data={"event": event, **data})


# -- the records view ---------------------------------------------------------------------


def merge_records(entries: Iterable[AuditEntry]) -> list[dict[str, Any]]:
    """One record per statement entry with its outcome merged in, plus session events.

    Statement records carry the statement entry's data (principal, database,
    text, sha256, fingerprint, findings, decision, grant...) and ``outcome``
    (command tag or SQLSTATE), ``rows``, ``duration_ms``, ``masked_columns`` and
    ``status``: the outcome's status ("completed", "failed", "not-run",
    "connection-lost"), or "incomplete" when no outcome entry was written.
    ``seq``/``ts``/``prev_hash``/``hash`` are the statement entry's;
    ``outcome_seq``/``outcome_hash`` the outcome entry's. Session and grant
    entries are records of their own; records come in seq order.
    """
    ordered = sorted(entries, key=lambda e: e.seq)
    outcomes: dict[int, AuditEntry] = {}
    for entry in ordered:
        if entry.kind is EntryKind.OUTCOME and entry.ref is not None:
            outcomes.setdefault(entry.ref, entry)
    statement_seqs = {e.seq for e in ordered if e.kind is EntryKind.STATEMENT}
    # The gateway records a session's principal once, in its chained
    # session-created entry; every statement record of the session shows it.
    principals: dict[str, Any] = {}
    for entry in ordered:
        if entry.kind is EntryKind.SESSION and entry.session_id and "principal" in entry.data:
            principals.setdefault(entry.session_id, entry.data["principal"])

    records: list[dict[str, Any]] = []
    for entry in ordered:
        if entry.kind is EntryKind.STATEMENT:
            record = _statement_record(entry, outcomes.get(entry.seq))
            if "principal" not in record and entry.session_id in principals:
                record["principal"] = principals[entry.session_id]
            records.append(record)
        elif entry.kind is EntryKind.OUTCOME:
            if entry.ref in statement_seqs:
                continue  # merged into its statement's record
            records.append(_plain_record(entry))  # its statement is outside this view
        else:
            records.append(_plain_record(entry))
    return records


def _statement_record(entry: AuditEntry, outcome: AuditEntry | None) -> dict[str, Any]:
    record: dict[str, Any] = dict(entry.data)
    record.update(seq=entry.seq, ts=entry.ts, kind=entry.kind.value, session_id=entry.session_id)
    if outcome is None:
        record.update(
            outcome=None,
            rows=None,
            duration_ms=None,
            masked_columns=[],
            status="incomplete",
            outcome_seq=None,
            outcome_hash=None,
        )
    else:
        data = outcome.data
        tag, sqlstate = data.get("tag"), data.get("sqlstate")
        result = data.get("outcome", tag if tag is not None else sqlstate)
        status = data.get("status") or ("failed" if sqlstate else "completed")
        record.update(
            outcome=result,
            rows=data.get("rows"),
            duration_ms=data.get("duration_ms"),
            masked_columns=list(data.get("masked_columns") or []),
            status=status,
            outcome_seq=outcome.seq,
            outcome_hash=outcome.hash,
        )
    record.update(prev_hash=entry.prev_hash, hash=entry.hash)
    return record


def _plain_record(entry: AuditEntry) -> dict[str, Any]:
    record: dict[str, Any] = dict(entry.data)
    record.update(seq=entry.seq, ts=entry.ts, kind=entry.kind.value, session_id=entry.session_id)
    if entry.ref is not None:
        record["ref"] = entry.ref
    record.update(prev_hash=entry.prev_hash, hash=entry.hash)
    return record


# -- group-commit writer ----------------------------------------------------------------------

# A request's result: its AuditEntry objects, or only their seqs (seqs_only).
_Deliver = Callable[[list[Any] | None, BaseException | None], None]


@dataclass(slots=True)
class _Request:
    entries: list[NewEntry]
    # How the result reaches the caller: ``deliver(result, error)``, or for the
    # proxy's inline appends ``done(seqs)`` / ``done(None)`` (or nothing at all).
    deliver: _Deliver | None = field(repr=False)
    seqs_only: bool = False
    done: Callable[[list[int] | None], None] | None = field(default=None, repr=False)


@dataclass
class WriterStats:
    requests: int = 0  # append requests written (or failed)
    entries: int = 0
    batches: int = 0  # store.append calls
    lane_entries: int = 0  # of the entries, those the proxy's C lanes queued


class AuditWriter:
    """Durable appends with group commit, for the event loop.

    ``await writer.append(entries)`` returns once the entries are committed.
    One background thread serves every caller: it takes everything queued
    (up to ``max_batch`` entries), writes it with ONE ``store.append`` and
    resolves each caller's future with that caller's entries. A failed write
    fails every request in it; a request whose data is not JSON fails alone.
    """

    def __init__(self, store: StateStore, *, max_batch: int = 2000, inline: bool = False) -> None:
        self._store = store
        self._max_batch = max(1, max_batch)
        self._pending: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.stats = WriterStats()
        # Inline: the event loop's own thread writes, once per loop iteration, all
        # that was appended during it. For a local store (SQLite) that beats a
        # thread hand-off per request; a networked store keeps the thread.
        self._inline = inline
        self._inline_pending: list[_Request] = []
        # Entries nobody waits for (outcomes) whose write failed: written with the next
        # batch, so a passing failure (a full disk freed, say) loses none of them.
        self._unwritten: list[_Request] = []
        self._unwritten_lane: list[Any] = []
        self._inline_scheduled = False
        # A store that can append without building entry objects (SQLite) serves
        # batches whose callers all want only seqs (append_seqs) that way.
        self._append_seqs: Callable[[list[NewEntry]], list[int]] | None = getattr(
            store, "append_seqs", None
        )
        # The proxy's fast lanes (runner/_lane.c) queue their entries here, in C; the
        # inline flush writes them first, in one append of their own.
        self._append_prepared: Callable[[list[Any]], int] | None = getattr(
            store, "append_prepared_seqs", None
        )
        self.lane_queue: Any = None
        if inline and _native is not None and self._append_prepared is not None:
            self.lane_queue = _native.AuditQueue(self._wake)
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        if not inline:
            self._thread.start()

    async def append(self, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        written: list[AuditEntry] = await self._append(entries, seqs_only=False)
        return written

    async def append_seqs(self, entries: Sequence[NewEntry]) -> list[int]:
        """``append`` for a caller that needs only the entries' seqs (cheaper)."""
        seqs: list[int] = await self._append(entries, seqs_only=True)
        return seqs

    async def _append(self, entries: Sequence[NewEntry], *, seqs_only: bool) -> list[Any]:
        if not entries:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if self._inline:
            if self._closing:
                raise RuntimeError("the audit writer is closed")
            self._inline_pending.append(
                _Request(
                    list(entries), lambda result, error: _settle(future, result, error), seqs_only
                )
            )
            self._wake()
            return await future

        def deliver(result: list[Any] | None, error: BaseException | None) -> None:
            # A closed loop (RuntimeError) means nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, error)

        self._submit(_Request(list(entries), deliver, seqs_only))
        return await future

    def submit_seqs(
        self,
        entries: Sequence[NewEntry],
        done: Callable[[list[int] | None], None] | None = None,
    ) -> None:
        """``append_seqs`` without a future, for the event loop's thread: ``done(seqs)``
        runs on the loop once the entries are durable, ``done(None)`` if the write
        failed (the proxy's hot path: no task switch between the commit and the
        forwarding; it is the caller's job not to forward before ``done``)."""
        if not entries:
            if done is not None:
                done([])
            return
        if self._inline:
            if self._closing:
                raise RuntimeError("the audit writer is closed")
            pending = self._inline_pending
            if done is None and pending:
                last = pending[-1]
                if last.deliver is None and last.done is None:
                    last.entries.extend(entries)  # nobody waits for either: one request
                    return
            pending.append(_Request(list(entries), None, True, done))
            self._wake()
            return

        if done is None:  # nobody waits: nothing to hand back (kept if a write fails)
            self._submit(_Request(list(entries), None, True))
            return
        # The writer thread hands the result to the loop, which delivers it as the
        # inline writer would.
        loop = asyncio.get_running_loop()
        on_loop = _Request(list(entries), None, True, done)

        def deliver(result: list[Any] | None, error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                loop.call_soon_threadsafe(_safe_deliver, on_loop, result, error)

        self._submit(_Request(on_loop.entries, deliver, True))

    def append_now(self, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        """The same, blocking (CLI, tests, non-async code)."""
        if not entries:
            return []
        if self._inline:
            if self._closing:
                raise RuntimeError("the audit writer is closed")
            return self._store.append(list(entries))
        future: concurrent.futures.Future[list[AuditEntry]] = concurrent.futures.Future()

        def deliver(result: list[Any] | None, error: BaseException | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result or [])

        self._submit(_Request(list(entries), deliver))
        return future.result()

    def close(self) -> None:
        """Write everything queued, then stop the thread. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._inline:
            self._flush_inline()
            if self.lane_queue is not None:
                self.lane_queue.close()
            return
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _wake(self) -> None:
        """Something was queued for the inline writer (by Python or by a lane's
        AuditQueue): flush once, one loop iteration later than call_soon would. The
        tasks this iteration woke (other connections' statements, outcomes) append
        first, so one commit serves them all: the commit is the costly part."""
        if not self._inline_scheduled:
            self._inline_scheduled = True
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._flush_inline)

    def _flush_inline(self) -> None:
        self._inline_scheduled = False
        if self.lane_queue is not None and (len(self.lane_queue) or self._unwritten_lane):
            self._flush_lanes()
        batch, self._inline_pending = self._inline_pending, []
        if self._unwritten:  # after a failed write: first, in the same commit
            batch[:0], self._unwritten = self._unwritten, []
        for start in range(0, len(batch), self._max_batch):
            self._write(batch[start : start + self._max_batch])

    def _flush_lanes(self) -> None:
        """The lanes' entries, first: a session's closing event (queued by Python)
        then follows the outcomes its lane queued in the same iteration."""
        queue = self.lane_queue
        items = queue.take()
        if self._unwritten_lane:  # after a failed write: first, in the same commit
            items[:0], self._unwritten_lane = self._unwritten_lane, []
        assert self._append_prepared is not None
        self.stats.requests += len(items)
        try:
            first: int | None = self._append_prepared(items)
        except Exception as exc:
            # Held statements learn that theirs failed (they are refused); outcomes
            # wait for the next write.
            outcomes = [item for item in items if item[4] is None]
            self._unwritten_lane = _keep_unwritten(outcomes, exc)
            first = None
        else:
            self.stats.batches += 1
            self.stats.entries += len(items)
            self.stats.lane_entries += len(items)
        queue.deliver(items, first)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    @property
    def closed(self) -> bool:
        return self._closing

    def _submit(self, request: _Request) -> None:
        with self._cond:
            if self._closing:
                raise RuntimeError("the audit writer is closed")
            self._pending.append(request)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    if self._unwritten:  # a last try for what a failed write left
                        batch, self._unwritten = self._unwritten, []
                        self._write(batch)
                    return  # closing and drained
                batch = self._unwritten
                self._unwritten = []
                size = sum(len(request.entries) for request in batch)
                while self._pending and (
                    not batch or size + len(self._pending[0].entries) <= self._max_batch
                ):
                    request = self._pending.popleft()
                    batch.append(request)
                    size += len(request.entries)
            self._write(batch)

    def _write(self, batch: list[_Request]) -> None:
        self.stats.requests += len(batch)
        good = batch
        append_seqs = self._append_seqs
        write: Callable[[list[NewEntry]], list[Any]] = (
            append_seqs
            if append_seqs is not None and all(request.seqs_only for request in batch)
            else self._store.append
        )
        try:
            written = write([new for request in good for new in request.entries])
        except (ValueError, TypeError):
            # Some request's data is not JSON (the store checks before it locks
            # anything): fail that request alone and write the others.
            good = []
            for request in batch:
                try:
                    for new in request.entries:
                        if not isinstance(new.data, CanonicalJson):
                            canonical_data(new.data)
                        EntryKind(new.kind)
                except Exception as exc:
                    _safe_deliver(request, None, exc)
                else:
                    good.append(request)
            if not good:
                return
            try:
                written = write([new for r in good for new in r.entries])
            except Exception as exc:
                for request in good:
                    _safe_deliver(request, None, exc)
                return
        except Exception as exc:
            unawaited = [
                new for r in good if r.deliver is None and r.done is None for new in r.entries
            ]
            if unawaited:
                self._unwritten.append(_Request(_keep_unwritten(unawaited, exc), None, True))
            for request in good:
                if request.deliver is not None or request.done is not None:
                    _safe_deliver(request, None, exc)
            return
        self.stats.batches += 1
        self.stats.entries += len(written)
        entries_written = write is not append_seqs
        start = 0
        for request in good:
            end = start + len(request.entries)
            if request.deliver is not None or request.done is not None:
                part = written[start:end]
                if request.seqs_only and entries_written:
                    part = [entry.seq for entry in part]
                _safe_deliver(request, part, None)
            start = end


# At most this many unawaited entries are kept for the next write after failures.
_UNWRITTEN_MAX = 100_000


def _keep_unwritten(entries: list[Any], error: BaseException) -> list[Any]:
    """What of ``entries`` (which nobody waits for) to write with the next batch, after
    ``error``: all of them, up to _UNWRITTEN_MAX (the oldest beyond it are lost, said
    in the log: the statements they complete then show as incomplete)."""
    kept = entries[-_UNWRITTEN_MAX:]
    _log.warning(
        "audit write failed: %s: %s%s",
        type(error).__name__,
        error,
        f"; {len(kept)} outcome entries kept for the next write" if kept else "",
    )
    if len(kept) < len(entries):
        _log.error(
            "audit log: %d outcome entries lost after repeated write failures",
            len(entries) - len(kept),
        )
    return kept


def _safe_deliver(request: _Request, result: list[Any] | None, error: BaseException | None) -> None:
    try:
        if request.deliver is not None:
            request.deliver(result, error)
            return
        if error is not None:
            _log.warning("audit write failed: %s: %s", type(error).__name__, error)
            result = None
        if request.done is not None:
            request.done(result)
    except Exception:  # a vanished caller must not stop the writer
        pass


def _settle(
    future: asyncio.Future[list[Any]],
    result: list[Any] | None,
    error: BaseException | None,
) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result or [])
