"""What the C code must agree on with Python, taken from the Python that owns it.

The C lane reads texts, tags and answers the way the Python relay does, and
writes the entries the Python writer would. Every value that has to be the same
on both sides is Python's and handed to C once (``_speedups.configure``):

* ``guard_words``: policy's ``LITERAL_GUARD_WORDS`` (a text holding one is decided
  statement by statement, never from a cache);
* ``row_commands``: the commands whose CommandComplete tag ends with a row count
  (wire's rule);
* ``outcome_layout``: ``outcome_data_json`` of a completed statement, as literal
  text and slots (``duration_ms``, ``tag``, ``rows``);
* ``statement_tail``: ``statement_data_json`` after ``statement_data_prefix`` (the
  part the lane completes per text: ``sha256``, ``text``);
* ``chain_hashed`` and ``chain_line``: what an audit entry's hash is taken over and
  its journal line, as ``audit.chain.chain_rows`` makes them (slots ``data``,
  ``kind``, ``prev_hash``, ``ref``, ``seq``, ``session_id``, ``ts``; ``hash``);
* ``statement_kind`` and ``outcome_kind``: the ``EntryKind`` members the lane's
  entries carry, as the Python relay's do.

The layouts are read off Python's own output for marker values, so a change to
the Python encoders changes what C writes, with no C edit.
"""

from __future__ import annotations

from typing import NamedTuple

# Values no real entry holds, each rendered by the encoders in one known way.
_TAG = "SIGNOFF-SLOT-TAG"
_ROWS = 918273645546372819
_DURATION_MS = 777777.777
_SHA256 = "SIGNOFF-SLOT-SHA256"
_TEXT = "SIGNOFF-SLOT-TEXT"
_DATA = '{"SIGNOFF-SLOT-DATA":0}'
_PREV_HASH = "SIGNOFF-SLOT-PREV-HASH"
_REF = 918273645546372811
_SEQ = 818273645546372819
_SESSION_ID = "SIGNOFF-SLOT-SESSION-ID"
_TS = "SIGNOFF-SLOT-TS"


class ContractError(RuntimeError):
    """Python's layout is one the C code cannot write (a slot missing or unknown)."""


class Contract(NamedTuple):
    guard_words: tuple[str, ...]
    row_commands: tuple[str, ...]
    outcome_layout: tuple[str, ...]
    statement_tail: tuple[str, ...]
    chain_hashed: tuple[str, ...]
    chain_line: tuple[str, ...]
    statement_kind: str
    outcome_kind: str


def layout(rendered: str, markers: dict[str, str], expected: dict[str, int]) -> tuple[str, ...]:
    """(literal, slot, literal, ..., literal) of ``rendered``: each marker's rendering
    (a key of ``markers``) becomes its slot name; ``expected`` counts each slot."""
    pieces: list[str] = []
    position = 0
    while True:
        found = [(rendered.find(m, position), m) for m in markers if m in rendered[position:]]
        if not found:
            break
        at, marker = min(found)
        pieces += [rendered[position:at], markers[marker]]
        position = at + len(marker)
    pieces.append(rendered[position:])
    counts = {slot: pieces[1::2].count(slot) for slot in expected}
    if counts != expected:
        raise ContractError(f"layout {rendered!r}: slots {counts}, expected {expected}")
    return tuple(pieces)


def contract() -> Contract:
    """Python's values, read from the modules that own them (imported here, not at
    this module's import: they import the loader themselves)."""
    from runner.audit.entries import (
        outcome_data_json,
        statement_data_json,
        statement_data_prefix,
    )
    from runner.gateway.model import AuditDecision, Outcome, StatementDecision
    from runner.gateway.policy.guard import LITERAL_GUARD_WORDS
    from runner.gateway.wire import _ROW_COMMANDS

    outcome = outcome_data_json(Outcome(tag=_TAG, rows=_ROWS, duration_ms=_DURATION_MS))
    outcome_layout = layout(
        outcome,
        {f'"{_TAG}"': "tag", str(_ROWS): "rows", repr(_DURATION_MS): "duration_ms"},
        {"tag": 2, "rows": 1, "duration_ms": 1},
    )
    decision = StatementDecision(_TEXT, _SHA256, "0" * 64, (), AuditDecision.ALLOWED)
    data = statement_data_json("db", decision)
    prefix = statement_data_prefix("db", decision)
    if not data.startswith(prefix):
        raise ContractError("statement data does not start with its prefix")
    tail = layout(
        data[len(prefix) :], {_SHA256: "sha256", f'"{_TEXT}"': "text"}, {"sha256": 1, "text": 1}
    )
    from runner.audit.chain import EntryKind

    hashed, line = chain_layouts()
    return Contract(
        LITERAL_GUARD_WORDS,
        tuple(sorted(_ROW_COMMANDS)),
        outcome_layout,
        tail,
        hashed,
        line,
        EntryKind.STATEMENT,
        EntryKind.OUTCOME,
    )


def chain_layouts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(what an entry's hash is taken over, its journal line) as ``chain_rows`` makes
    them; the hashed text is checked against the hash chain_rows gives."""
    from runner.audit.chain import CanonicalJson, EntryKind, chain_rows, row_entries
    from runner.plan.model import canonical_json, sha256_hex

    kind = EntryKind.STATEMENT
    prepared = [(kind, _SESSION_ID, _REF, CanonicalJson(_DATA), None)]
    lines: list[str] = []
    (row,) = chain_rows(prepared, _SEQ - 1, _PREV_HASH, _TS, lines)
    digest = row[7]
    (entry,) = row_entries(prepared, [row])
    hashed = _PREV_HASH + canonical_json(entry.body())
    if sha256_hex(hashed) != digest:
        raise ContractError("an entry's hash is not sha256(prev_hash + its canonical body)")
    markers = {
        _DATA: "data",
        f'"{kind.value}"': "kind",
        _PREV_HASH: "prev_hash",
        str(_REF): "ref",
        str(_SEQ): "seq",
        f'"{_SESSION_ID}"': "session_id",
        f'"{_TS}"': "ts",
    }
    once = dict.fromkeys(markers.values(), 1)
    hashed_layout = layout(hashed, markers, {**once, "prev_hash": 2})
    line_layout = layout(lines[0], {**markers, digest: "hash"}, {**once, "hash": 1})
    return hashed_layout, line_layout
