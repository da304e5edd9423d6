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
  part the lane completes per text: ``sha256``, ``text``).

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


class ContractError(RuntimeError):
    """Python's layout is one the C code cannot write (a slot missing or unknown)."""


class Contract(NamedTuple):
    guard_words: tuple[str, ...]
    row_commands: tuple[str, ...]
    outcome_layout: tuple[str, ...]
    statement_tail: tuple[str, ...]


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
    from runner.gateway.auditlog import (
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
    return Contract(LITERAL_GUARD_WORDS, tuple(sorted(_ROW_COMMANDS)), outcome_layout, tail)
