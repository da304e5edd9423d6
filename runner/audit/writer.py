"""The gateway's audit writer: durable appends with group commit.

Two ways to hand entries over, both in submission order per caller:

* ``await writer.append(entries)`` returns the entries' seqs once they are
  durable, or raises what the write raised (a request whose data is not JSON
  fails alone). ``append_now`` is the same request for code that is not on the
  event loop (a worker thread, the CLI): it blocks instead of awaiting.
* ``writer.submit(entries, done=None)`` is fire-and-forget. Entries nobody waits
  for (outcomes) whose write failed go with the next write. ``done``, when given,
  runs on the event loop with the seqs once durable, or None if the write failed:
  the proxy's hot path, which forwards a statement only from ``done`` (no task
  switch between the commit and the forwarding).

Every request reaches the store as one ``store.append_seqs`` per batch (one
transaction). Two modes: with ``inline`` (a local SQLite store) the event loop's
own thread writes, once per loop iteration, all that was submitted during it;
otherwise one background thread drains the queue. The proxy's C fast lanes
(runner/_native/_lane.c) queue entries of their own in ``lane_queue`` (inline mode,
C built): they go first, in one ``store.append_prepared`` of their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner._native.loader import native as _native
from runner.audit.chain import NewEntry, check_entry

if TYPE_CHECKING:
    from runner.gateway.model import StateStore

_log = logging.getLogger("signoff.gateway.audit")

# How a request's result reaches its caller: ``done(seqs, None)`` or ``done(None, error)``.
_Done = Callable[[list[int] | None, BaseException | None], None]

# At most this many unawaited entries are kept for the next write after failures.
_UNWRITTEN_MAX = 100_000


@dataclass(slots=True)
class _Request:
    entries: list[NewEntry]
    # None: nobody waits (kept for the next write if this one fails).
    done: _Done | None = field(default=None, repr=False)
    # The loop ``done`` runs on, for the writer thread; None: run where the write ran.
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)


@dataclass
class WriterStats:
    requests: int = 0  # append requests written (or failed)
    entries: int = 0
    batches: int = 0  # store appends
    lane_entries: int = 0  # of the entries, those the proxy's C lanes queued


class AuditWriter:
    """Durable appends with group commit, for the event loop (see the module doc).

    One writer serves every caller: it takes everything queued (up to ``max_batch``
    entries), writes it with ONE store append and tells each caller its own seqs.
    A failed write fails every awaited request in it and keeps the unawaited ones.
    """

    def __init__(self, store: StateStore, *, max_batch: int = 2000, inline: bool = False) -> None:
        self._store = store
        self._max_batch = max(1, max_batch)
        self._closing = False
        self.stats = WriterStats()
        # Inline: the event loop's own thread writes, once per loop iteration, all
        # that was submitted during it. For a local store (SQLite) that beats a
        # thread hand-off per request; a networked store keeps the thread.
        self._inline = inline
        self._inline_pending: list[_Request] = []
        self._inline_scheduled = False
        self._pending: deque[_Request] = deque()  # the thread's queue
        self._cond = threading.Condition()
        # Entries nobody waits for (outcomes) whose write failed: written with the next
        # batch, so a passing failure (a full disk freed, say) loses none of them.
        self._unwritten: list[_Request] = []
        self._unwritten_lane: list[Any] = []
        # The proxy's fast lanes (C) queue their entries here; the inline flush
        # writes them first.
        self.lane_queue: Any = None
        if inline and _native is not None:
            self.lane_queue = _native.AuditQueue(self._wake)
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        if not inline:
            self._thread.start()

    # -- handing entries over ------------------------------------------------------------

    async def append(self, entries: Sequence[NewEntry]) -> list[int]:
        """The entries' seqs, once they are durable."""
        if not entries:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self._enqueue(
            _Request(
                list(entries),
                lambda seqs, error: _settle(future, seqs, error),
                None if self._inline else loop,
            )
        )
        return await future

    def submit(
        self,
        entries: Sequence[NewEntry],
        done: Callable[[list[int] | None], None] | None = None,
    ) -> None:
        """Fire-and-forget, for the event loop's thread; ``done(seqs)`` / ``done(None)``
        on the loop once the entries are durable / their write failed. It is the
        caller's job not to act on the entries (forward a statement) before ``done``."""
        if not entries:
            if done is not None:
                done([])
            return
        if done is None:
            pending = self._inline_pending
            if self._inline and pending and pending[-1].done is None and not self._closing:
                pending[-1].entries.extend(entries)  # nobody waits for either: one request
                return
            self._enqueue(_Request(list(entries)))
            return
        self._enqueue(
            _Request(
                list(entries),
                lambda seqs, error: _tell(done, seqs, error),
                None if self._inline else asyncio.get_running_loop(),
            )
        )

    def append_now(self, entries: Sequence[NewEntry]) -> list[int]:
        """``append`` for code off the event loop (worker threads, the CLI): blocks."""
        if not entries:
            return []
        if self._inline:
            # The loop's thread may be this one, or busy: write straight to the store
            # (thread-safe), as one batch of its own.
            if self._closing:
                raise RuntimeError("the audit writer is closed")
            return self._store.append_seqs(list(entries))
        future: concurrent.futures.Future[list[int]] = concurrent.futures.Future()

        def done(seqs: list[int] | None, error: BaseException | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(seqs or [])

        self._enqueue(_Request(list(entries), done))
        return future.result()

    def close(self) -> None:
        """Write everything queued, then stop. Idempotent."""
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

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    @property
    def closed(self) -> bool:
        return self._closing

    # -- queueing ----------------------------------------------------------------------------

    def _enqueue(self, request: _Request) -> None:
        if self._inline:
            if self._closing:
                raise RuntimeError("the audit writer is closed")
            self._inline_pending.append(request)
            self._wake()
            return
        with self._cond:
            if self._closing:
                raise RuntimeError("the audit writer is closed")
            self._pending.append(request)
            self._cond.notify()

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
        self.stats.requests += len(items)
        try:
            first: int | None = self._store.append_prepared(items)
        except Exception as exc:
            # Held statements learn that theirs failed (they are refused); outcomes
            # (no waiter, item[4]) wait for the next write.
            outcomes = [item for item in items if item[4] is None]
            self._unwritten_lane = _keep_unwritten(outcomes, exc)
            first = None
        else:
            self.stats.batches += 1
            self.stats.entries += len(items)
            self.stats.lane_entries += len(items)
        queue.deliver(items, first)

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
                batch, self._unwritten = self._unwritten, []
                size = sum(len(request.entries) for request in batch)
                while self._pending and (
                    not batch or size + len(self._pending[0].entries) <= self._max_batch
                ):
                    request = self._pending.popleft()
                    batch.append(request)
                    size += len(request.entries)
            self._write(batch)

    # -- writing -----------------------------------------------------------------------------

    def _write(self, batch: list[_Request]) -> None:
        self.stats.requests += len(batch)
        good = batch
        append = self._store.append_seqs
        try:
            seqs = append([new for request in good for new in request.entries])
        except (ValueError, TypeError):
            # Some request's data is not JSON (the store checks before it locks
            # anything): fail that request alone and write the others.
            good = []
            for request in batch:
                try:
                    for new in request.entries:
                        check_entry(new)
                except Exception as exc:
                    _fail(request, exc)
                else:
                    good.append(request)
            if not good:
                return
            try:
                seqs = append([new for request in good for new in request.entries])
            except Exception as exc:
                for request in good:
                    _fail(request, exc)
                return
        except Exception as exc:
            unawaited = [new for r in good if r.done is None for new in r.entries]
            if unawaited:
                self._unwritten.append(_Request(_keep_unwritten(unawaited, exc)))
            for request in good:
                _deliver(request, None, exc)  # the awaited ones: the others are kept
            return
        self.stats.batches += 1
        self.stats.entries += len(seqs)
        start = 0
        for request in good:
            end = start + len(request.entries)
            _deliver(request, seqs[start:end], None)
            start = end


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


def _fail(request: _Request, error: BaseException) -> None:
    """A request that will not be written: its caller learns why, or the log does."""
    if request.done is None:
        _log.warning("audit write failed: %s: %s", type(error).__name__, error)
    else:
        _deliver(request, None, error)


def _deliver(request: _Request, seqs: list[int] | None, error: BaseException | None) -> None:
    done = request.done
    if done is None:
        return
    loop = request.loop
    if loop is None:
        _call(done, seqs, error)
        return
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        loop.call_soon_threadsafe(_call, done, seqs, error)


def _call(done: _Done, seqs: list[int] | None, error: BaseException | None) -> None:
    with contextlib.suppress(Exception):  # a vanished caller must not stop the writer
        done(seqs, error)


def _tell(
    done: Callable[[list[int] | None], None], seqs: list[int] | None, error: BaseException | None
) -> None:
    if error is not None:
        _log.warning("audit write failed: %s: %s", type(error).__name__, error)
        seqs = None
    done(seqs)


def _settle(
    future: asyncio.Future[list[int]], seqs: list[int] | None, error: BaseException | None
) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(seqs or [])
