"""Checking an audit chain, offline: ``verify_chain`` reports the first break.

An entry whose hash does not match its contents, a ``prev_hash`` that does not
link, a missing seq, an outcome that completes no earlier statement. Statement
entries with no outcome are ``incomplete`` (the gateway stopped between
forwarding and recording the result): reported, never a chain failure. Needs
nothing of the gateway: entries read from a journal, the ``audit`` table or a
bundle's ``session.jsonl`` verify the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.audit.chain import GENESIS_HASH, AuditEntry, EntryKind, entry_hash


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
