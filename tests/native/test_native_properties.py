"""The C readers (runner/_native/_contract.c, _speedups_core.h) against their Python
twins, on random and mutated input: they must give the same answer every time.

* the one-shot shape (Parse, Bind, [Describe], Execute, Sync of the unnamed
  statement) against ``reference.one_shot_shape``;
* the simple Query the lane looks up (its framing, ASCII, the literal guard, the
  literal mask) against ``reference.lane_query_text`` and ``literal_shape``;
* the literal mask against sqlglot's (``plan.statements.literal_shape``): when C
  answers, sqlglot reads the text, splits it into that one statement and masks it
  alike;
* the literal guard against ``policy.guard.needs_literal_guard``;
* the journal lines of random entries against ``audit.chain.chain_rows``;
* a tag's row count against ``wire.rows_from_tag``; the outcome data against
  ``audit.entries.outcome_data_json``; the statement data against
  ``audit.entries.statement_data_json``.

Valid messages are built, then flipped, truncated, extended, reordered, dropped,
doubled or given a wrong length. Examples are bounded (a few thousand in all) and
drawn deterministically, so CI time stays small and a failure reproduces.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner._native import reference
from runner._native.loader import extension
from runner.audit.chain import CanonicalJson, EntryKind, chain_rows
from runner.audit.entries import (
    outcome_data_json,
    statement_data_json,
    statement_data_prefix,
)
from runner.gateway import wire
from runner.gateway.model import AuditDecision, Outcome, StatementDecision
from runner.gateway.policy.guard import LITERAL_GUARD_WORDS, needs_literal_guard
from runner.plan.model import canonical_json, sha256_hex
from runner.plan.statements import literal_shape, split_statements, tokenize

native = extension()
pytestmark = pytest.mark.skipif(
    native is None, reason="the C extension is not built (or SIGNOFF_PURE_PYTHON=1)"
)


def bounded(examples: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same examples on every run: CI does not flake
        database=None,  # and writes no .hypothesis directory into the tree
        suppress_health_check=[HealthCheck.too_slow],
    )


# -- building and mutating messages ----------------------------------------------------------

# SQL-ish texts: literals, words, guard words in any case, odd characters.
_WORDS = [
    "SELECT", "select", "FROM", "WHERE", "AND", "t", "a", "b1", "s.t", "(", ")", ",", "=",
    "<>", "::int", "-", "*", ";", "0", "7", "3.14", "1e9", "'a'", "''", "'it''s'", "$1",
    "$2", '"Q"', "--", "/*", "*/", "$$", "E'x'", "\\", "é", "\t", "\n", "\x00", "?", "@",
    "set_config('x', 'y', false)", "U&'d\\0061t'", "u&\"x\"", "standard_conforming_strings",
    "Standard_Conforming_Strings", "CONFORMING", "SeT_CoNfIg", "u&", "U&",
]  # fmt: skip

texts = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=10).map(" ".join) | st.text(
    st.characters(codec="utf-8"), max_size=30
)
ascii_texts = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=10).map(" ".join).map(
    lambda text: text.encode("ascii", "ignore").decode("ascii")
) | st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=30)


def message(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!I", len(body) + 4) + body


@st.composite
def one_shot_parts(draw: st.DrawFn) -> list[bytes]:
    """The messages of a one-shot, mostly valid, sometimes a near miss in a field (a
    named statement or portal, a row limit, a statement Describe)."""
    text = draw(texts).encode("utf-8").replace(b"\x00", b"")
    types = draw(st.lists(st.integers(0, 2**32 - 1), max_size=3))
    name = draw(st.sampled_from([b"", b"", b"", b"s1"]))
    portal = draw(st.sampled_from([b"", b"", b"", b"p"]))
    params = draw(st.lists(st.binary(max_size=6), max_size=3))
    bind = portal + b"\x00" + name + b"\x00" + struct.pack("!hh", 0, len(params))
    for param in params:
        bind += struct.pack("!i", len(param)) + param
    bind += struct.pack("!h", 0)
    parts = [
        message(wire.PARSE, name + b"\x00" + text + b"\x00" + struct.pack("!h", len(types))
                + b"".join(struct.pack("!I", t) for t in types)),
        message(wire.BIND, bind),
    ]  # fmt: skip
    if draw(st.booleans()):
        parts.append(message(wire.DESCRIBE, draw(st.sampled_from([b"P", b"P", b"S"])) + b"\x00"))
    rows = draw(st.sampled_from([0, 0, 0, 5]))
    parts += [message(wire.EXECUTE, portal + b"\x00" + struct.pack("!I", rows)), wire.sync()]
    return parts


@st.composite
def mutated(draw: st.DrawFn, parts: st.SearchStrategy[list[bytes]]) -> bytes:
    """``parts`` joined as they are, or with one mutation."""
    messages = list(draw(parts))
    how = draw(st.sampled_from(
        ["none", "none", "flip", "truncate", "extend", "reorder", "drop", "double", "length"]
    ))  # fmt: skip
    if how == "reorder" and len(messages) > 1:
        i, j = draw(st.permutations(range(len(messages))))[:2]
        messages[i], messages[j] = messages[j], messages[i]
    elif how == "drop" and len(messages) > 1:
        del messages[draw(st.integers(0, len(messages) - 1))]
    elif how == "double":
        at = draw(st.integers(0, len(messages) - 1))
        messages.insert(at, messages[at])
    elif how == "length":
        at = draw(st.integers(0, len(messages) - 1))
        length = draw(st.sampled_from([0, 3, 4, 5, 2**31, 2**32 - 1]))
        messages[at] = messages[at][:1] + struct.pack("!I", length) + messages[at][5:]
    data = b"".join(messages)
    if how == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    elif how == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "extend":
        data += draw(st.binary(min_size=1, max_size=12) | st.just(wire.sync()))
    return data


def queries(text: st.SearchStrategy[str]) -> st.SearchStrategy[list[bytes]]:
    return text.map(lambda sql: [message(wire.QUERY, sql.encode("utf-8") + b"\x00")])


# -- the one-shot shape ------------------------------------------------------------------


@bounded(800)
@given(mutated(one_shot_parts()))
def test_the_one_shot_shape_is_read_as_python_reads_it(data: bytes) -> None:
    assert native is not None
    expected = reference.one_shot_shape(data)
    assert native._one_shot_shape(data) == (None if expected is None else tuple(expected))


def test_the_one_shot_examples_reach_both_answers() -> None:
    """The strategy is not all near misses: valid shapes, with and without Describe."""
    assert native is not None
    found: set[Any] = set()

    @bounded(300)
    @given(mutated(one_shot_parts()))
    def collect(data: bytes) -> None:
        shape = native._one_shot_shape(data)
        found.add(None if shape is None else shape[2])

    collect()
    assert found == {None, True, False}


# -- the simple Query the lane looks up ------------------------------------------------------


@bounded(800)
@given(mutated(queries(texts)))
def test_the_query_the_lane_looks_up_is_the_one_python_says(data: bytes) -> None:
    assert native is not None
    text = reference.lane_query_text(data)
    shape = None if text is None else native.literal_shape(text)
    expected = None if shape is None else (shape[0], shape[1] + 5, shape[2] + 5)
    assert native._query_key(data) == expected


@bounded(600)
@given(ascii_texts)
def test_the_literal_guard_is_policys(text: str) -> None:
    assert native is not None
    assert native._literal_guard(text.encode("ascii")) == needs_literal_guard(text)


def test_the_literal_guard_holds_every_word_in_any_case() -> None:
    assert native is not None
    for word in LITERAL_GUARD_WORDS:
        for spelt in (word, word.upper(), word.title(), word.swapcase()):
            text = f"SELECT 1 /* {spelt} */"
            assert native._literal_guard(text.encode()) and needs_literal_guard(text), spelt


# -- the literal mask ------------------------------------------------------------------------

_PARAMETER = re.compile(r"\$\d+")


@bounded(600)
@given(texts)
def test_when_c_masks_a_text_sqlglot_reads_and_masks_it_alike(sql: str) -> None:
    assert native is not None
    shape = native.literal_shape(sql)
    if shape is None:
        return
    mask, start, end = shape
    tokens = tokenize(sql)  # a text sqlglot cannot read must never get a C mask
    (statement,) = split_statements(sql)
    assert sql[start:end] == statement.text
    # sqlglot reads $1 as two tokens ("$", "1"): compare with $n spelt as a number
    plain = _PARAMETER.sub("0", sql)
    assert literal_shape(plain, tokenize(plain) if plain != sql else tokens)[0] == mask


# -- tags, outcomes, statement data ----------------------------------------------------------

_TAG_WORDS = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE", "select",
    "CREATE", "TABLE", "SHOW", "0", "3", "12", "007", "1" * 19, "x", "", " ", "-1", "2e3",
]  # fmt: skip
tags = st.lists(st.sampled_from(_TAG_WORDS), min_size=1, max_size=4).map(" ".join) | st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24
)


@bounded(600)
@given(tags)
def test_a_tags_row_count_is_wires(tag: str) -> None:
    assert native is not None
    expected = wire.rows_from_tag(tag)
    count = tag[tag.rfind(" ") + 1 :]
    if expected is not None and len(count) > 18:  # the lane leaves such a tag to Python
        with pytest.raises(OverflowError):
            native._tag_rows(tag)
        return
    assert native._tag_rows(tag) == expected


@bounded(300)
@given(tags, st.integers(0, 10**12))
def test_the_outcome_data_is_the_audit_entries(tag: str, us: int) -> None:
    assert native is not None
    rows = wire.rows_from_tag(tag)
    if rows is not None and len(tag[tag.rfind(" ") + 1 :]) > 18:
        return  # left to Python (above)
    expected = outcome_data_json(Outcome(tag=tag, rows=rows, duration_ms=us / 1000))
    assert native.outcome_data(tag, us) == expected


@bounded(300)
@given(
    st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=40),
    st.text(max_size=8),
    st.sampled_from([None, 'why "not"', "é\n"]),
)
def test_the_statement_data_is_the_audit_entries(
    text: str, database: str, reason: str | None
) -> None:
    assert native is not None
    decision = StatementDecision(
        text, sha256_hex(text), "f" * 64, (), AuditDecision.ALLOWED, reason=reason
    )
    prefix = statement_data_prefix(database, decision)
    assert native._statement_data(prefix, text.encode()) == statement_data_json(database, decision)


# -- journal lines ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
entries = st.tuples(
    st.sampled_from(list(EntryKind)),
    st.none() | st.text(max_size=12),
    st.none() | st.integers(0, 2**62),
    st.dictionaries(st.text(max_size=6), json_values, max_size=4).map(
        lambda data: CanonicalJson(canonical_json(data))
    ),
    st.none(),
)
stamps = st.datetimes(timezones=st.none()).map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


@bounded(300)
@given(
    st.lists(entries, min_size=1, max_size=5),
    st.integers(0, 2**40),
    st.binary(min_size=32, max_size=32).map(bytes.hex),
    stamps,
)
def test_journal_lines_are_the_chains(
    prepared: list[tuple[Any, ...]], last_seq: int, last_hash: str, ts: str
) -> None:
    assert native is not None
    lines: list[str] = []
    rows = chain_rows(prepared, last_seq, last_hash, ts, lines)
    assert native.chain_lines(prepared, last_seq, last_hash, ts) == (
        "".join(lines).encode(),
        rows[-1][7],
    )
