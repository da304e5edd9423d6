"""One proxied connection's tie to its database's guard.

The relay asks three things of it, none of them on the path of a read:

* ``wants(decisions)``: whether a statement must be marked before it is forwarded:
  it used a grant, or the analysis saw in its own text a destructive effect (or a
  table rewrite) that the role allows. A statement the analysis allowed because it
  saw nothing of the kind (a read, ``SELECT f()``) is never marked, so whatever a
  function does behind it is the guard's to refuse. A table the session created
  itself needs no mark either: the guard knows what each backend created.
* ``then_forward(text, seqs, go)``: mark (over the marker's admin connection), then
  ``go()``; also waits for marks still being cleared, so a statement never runs
  under the mark of the one before it.
* ``notice(body, seq)``: a NOTICE carrying one of this connection's live nonces is
  the guard's account of a marked statement: kept for that statement's outcome
  (``nested``) and not relayed. ``outcomes(owed)`` joins them in and clears the
  marks whose statements have all answered.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from runner.gateway import wire
from runner.gateway.dbguard.marker import GuardMarker
from runner.gateway.dbguard.sql import NOTICE_PREFIX
from runner.gateway.model import AuditDecision, Outcome, StatementDecision

# Findings whose effect the guard refuses without a mark: the destructive rules, and
# the column type change that rewrites the table (SO207, a locking rule).
_MARKED_CATEGORIES = frozenset({"destructive"})
_MARKED_RULES = frozenset({"SO207"})
MAX_NESTED = 1000  # per statement: what an audit record lists of what the guard saw

_markers: weakref.WeakKeyDictionary[object, Mapping[str, GuardMarker]] = weakref.WeakKeyDictionary()


def attach(backend: object, markers: Mapping[str, GuardMarker]) -> None:
    """The markers of a gateway's databases (by name), for its connections."""
    _markers[backend] = markers


def markers_of(backend: object) -> Mapping[str, GuardMarker]:
    return _markers.get(backend, {})


def link_for(backend: object, database: str, backend_pid: int) -> GuardLink | None:
    """The connection's link, or None when the database has no guard credential."""
    marker = _markers.get(backend, {}).get(database)
    return None if marker is None or not backend_pid else GuardLink(marker, backend_pid)


def _marked(decision: StatementDecision) -> bool:
    if decision.decision is AuditDecision.APPROVED:
        return True
    if decision.decision is not AuditDecision.ALLOWED:
        return False
    return any(
        f.get("category") in _MARKED_CATEGORIES or f.get("rule") in _MARKED_RULES
        for f in decision.findings
    )


class GuardLink:
    def __init__(self, marker: GuardMarker, backend_pid: int) -> None:
        self.marker = marker
        self.pid = backend_pid
        self._nonce_of: dict[int, str] = {}  # statement seq -> its mark's nonce
        self._seqs_of: dict[str, set[int]] = {}  # nonce -> seqs still owed an outcome
        self._nested: dict[int, list[dict[str, str]]] = {}  # seq -> what the guard saw
        self._clearing: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        """A mark is live: the guard's notices may arrive."""
        return bool(self._seqs_of)

    @staticmethod
    def wants(decisions: Sequence[StatementDecision]) -> bool:
        return any(_marked(d) for d in decisions)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def then_forward(self, text: str | None, seqs: Sequence[int], go: Callable[[], None]) -> bool:
        """Mark ``text`` (None: no mark) for ``seqs``, then ``go()``; False when there
        is nothing to wait for (the caller goes on at once)."""
        if text is None and not self._clearing:
            return False

        async def run() -> None:
            try:
                if self._clearing:
                    await asyncio.gather(*self._clearing, return_exceptions=True)
                if text is not None:
                    nonce = await self.marker.mark(self.pid, text)
                    if nonce is not None:  # None: unmarked, the guard refuses (fail closed)
                        self._seqs_of[nonce] = set(seqs)
                        for seq in seqs:
                            self._nonce_of[seq] = nonce
            finally:
                go()

        self._spawn(run())
        return True

    def notice(self, body: bytes, seq: int | None) -> bool:
        """Whether the NOTICE is the guard's for a live mark (kept, not relayed)."""
        fields = wire.parse_error_fields(body)
        message = fields.get("M", "")
        if not message.startswith(NOTICE_PREFIX):
            return False
        seqs = self._seqs_of.get(message[len(NOTICE_PREFIX) :])
        if not seqs:
            return False
        target = seq if seq in seqs else min(seqs)
        try:
            detail = json.loads(fields.get("D") or "{}")
        except ValueError:
            detail = {}
        seen = self._nested.setdefault(target, [])
        if len(seen) < MAX_NESTED and isinstance(detail, dict):
            seen.append({k: str(detail.get(k)) for k in ("tag", "type", "identity") if k in detail})
        return True

    def outcomes(self, owed: list[tuple[int, Outcome]]) -> list[tuple[int, Outcome]]:
        """``owed`` with what the guard saw joined in; marks fully answered are cleared."""
        if not self._nonce_of:
            return owed
        joined: list[tuple[int, Outcome]] = []
        finished: list[str] = []
        for seq, outcome in owed:
            nonce = self._nonce_of.pop(seq, None)
            if nonce is not None:
                seen = self._nested.pop(seq, None)
                if seen:
                    outcome = outcome._replace(nested=tuple(seen))
                left = self._seqs_of.get(nonce)
                if left is not None:
                    left.discard(seq)
                    if not left:
                        del self._seqs_of[nonce]
                        finished.append(nonce)
            joined.append((seq, outcome))
        if finished:
            self._clear(finished)
        return joined

    def _clear(self, nonces: list[str]) -> None:
        task = self._spawn(self.marker.clear(self.pid, nonces))
        self._clearing.add(task)
        task.add_done_callback(self._clearing.discard)

    async def close(self) -> None:
        """The connection has ended: its marks go (they die with the backend anyway)."""
        if self._seqs_of:
            self._clear(list(self._seqs_of))
            self._seqs_of.clear()
            self._nonce_of.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
