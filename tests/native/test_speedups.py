"""runner._native._speedups (C) against its pure-Python twins, on the same inputs.

* ``literal_shape``: whenever C answers, the statement text is the one the
  splitter gives, and texts that share a C mask share a fingerprint (what makes
  the mask a sound cache key). Texts C cannot read plainly get None.
* ``chain_lines``: the journal lines and the last hash are byte for byte the
  audit chain's published vectors (runner/audit/chain_vectors.json, the ones
  ``audit.chain.chain_rows`` is checked against), and what ``chain_rows`` makes of
  random entries; hashlib agrees with its SHA-256.
* ``journal_append``: the vectors' entries, stamped now, written under the flock
  only while the file ends where the caller believes it does.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import random
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner._native.loader import extension
from runner.audit import chain
from runner.audit.chain import CanonicalJson, EntryKind
from runner.audit.chain import chain_rows as _chain_rows
from runner.plan.statements import split_statements, tokenize

_built = extension()
if _built is None:
    pytest.skip("the C extension is not built (or SIGNOFF_PURE_PYTHON=1)", allow_module_level=True)
speedups = _built

# Statements C must read plainly, each with the mask it must give.
PLAIN = {
    "SELECT abalance FROM pgbench_accounts WHERE aid = 123456;": (
        "SELECT abalance FROM pgbench_accounts WHERE aid = ?;"
    ),
    "  select a, 'it''s', 1.5e3, 2E-7 from t where x::int >= -4  ;  ": (
        "  select a, ?, ?, ? from t where x::int >= -?  ;  "
    ),
    "SELECT a FROM t WHERE b = $1 AND c >= $12": "SELECT a FROM t WHERE b = ? AND c >= ?",
    'SELECT "Weird ""name""", t.c FROM s.t WHERE c <> \'\' AND d = 5': (
        'SELECT "Weird ""name""", t.c FROM s.t WHERE c <> ? AND d = ?'
    ),
    "SELECT count(*) FROM t WHERE a IN (1, 2, 3) OR b ~ 'x.*'": (
        "SELECT count(*) FROM t WHERE a IN (?, ?, ?) OR b ~ ?"
    ),
    "UPDATE t SET a = a + 1 WHERE id = 7": "UPDATE t SET a = a + ? WHERE id = ?",
}

# Texts C must leave to sqlglot (None), and why.
NOT_PLAIN = [
    "SELECT 1 -- signoff: allow SO301 because x",  # a comment may hold a directive
    "/* c */ SELECT 1",
    "SELECT E'a\\nb'",  # prefixed strings
    "SELECT U&'d\\0061t'",
    "SELECT B'101', X'FF', N'n'",
    "SELECT 'back\\slash'",  # depends on standard_conforming_strings
    "SELECT $$body$$",  # dollar quotes
    "SELECT $tag$ x $tag$",
    "SELECT 'é'",  # non-ASCII
    "SELECT 1; SELECT 2",  # two statements
    "SELECT 1;;",
    ";SELECT 1",
    "SELECT .5",  # number forms the real tokenizer decides
    "SELECT 1.",
    "SELECT 1e",
    "SELECT 1_000",
    "SELECT 0x1F",
    "SELECT 12abc",
    "SELECT 'unterminated",
    'SELECT "unterminated',
    "SELECT `x`",
    "SELECT a\\b",
    "SELECT 'a'b",
    "SELECT 1\x01",
    "SELECT $1 = ''",  # sqlglot cannot tokenize this one: the full analysis decides
    "SELECT a FROM t WHERE b = $1 AND c = 'x'",
    "SELECT e$x FROM t",  # sqlglot may read a $ in a word as a dollar quote
    "SELECT @ 3.14",  # sqlglot reads "@ 3.14" as a parameter, "3", ".", "14"
    "SELECT # 1",
    "SELECT ? FROM t",
    "",
    "   ",
    ";",
]


@pytest.mark.parametrize("sql", list(PLAIN), ids=range(len(PLAIN)))
def test_plain_statements_get_their_mask_and_the_splitters_text(sql: str) -> None:
    shape = speedups.literal_shape(sql)
    assert shape is not None
    mask, start, end = shape
    assert mask == PLAIN[sql]
    (statement,) = split_statements(sql)
    assert sql[start:end] == statement.text


@pytest.mark.parametrize("sql", NOT_PLAIN, ids=range(len(NOT_PLAIN)))
def test_anything_not_plain_is_left_to_sqlglot(sql: str) -> None:
    assert speedups.literal_shape(sql) is None


# A small grammar of token spellings: literals C masks, and everything else.
_LITERALS = ["0", "7", "42", "3.14", "1e9", "2.5E-3", "'a'", "''", "'it''s'", "'x y;z'", "$1", "$2"]
_OTHER = [
    "SELECT", "select", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "IS", "NULL", "AS",
    "t", "a", "b1", "c_d", "e$", '"Q"', '"a""b"', "s.t", "(", ")", ",", "=", "<>", "<=",
    "+", "-", "*", "/", "::", "::text", "[", "]", "||", "~", "%", "?", "@", "#", "!",
]  # fmt: skip


def _random_statement(rng: random.Random) -> str:
    parts = ["SELECT"]
    for _ in range(rng.randint(1, 12)):
        parts.append(rng.choice(_LITERALS if rng.random() < 0.35 else _OTHER))
    text = rng.choice(["", " ", "  \n"]).join([""]) + " ".join(parts)
    return text + rng.choice(["", ";", " ;", ";  "])


def test_same_mask_same_fingerprint_and_text_on_random_statements() -> None:
    """Random statements (and the same ones with other literal values): all texts
    that share a C mask share a fingerprint, and C's text is the splitter's."""
    rng = random.Random(20261129)
    by_mask: dict[str, set[str]] = defaultdict(set)
    answered = 0
    for _ in range(3000):
        base = _random_statement(rng)
        variants = [base]
        for _ in range(3):  # the same statement with other literal values
            variants.append(
                " ".join(
                    rng.choice(_LITERALS) if word in _LITERALS else word
                    for word in base.rstrip("; ").split(" ")
                )
                + (";" if base.rstrip().endswith(";") else "")
            )
        for sql in variants:
            shape = speedups.literal_shape(sql)
            if shape is None:
                continue
            answered += 1
            mask, start, end = shape
            # sqlglot reads it (a text it cannot read must get the full analysis,
            # which fails closed, never an answer cached for another text)
            tokenize(sql)
            statements = split_statements(sql)
            assert len(statements) == 1, sql
            assert sql[start:end] == statements[0].text, sql
            by_mask[mask].add(statements[0].fingerprint)
    assert answered > 4000  # the grammar is mostly plain: C answers most of it
    shared = {mask: fps for mask, fps in by_mask.items() if len(fps) > 1}
    assert not shared, f"masks shared by texts with different fingerprints: {shared}"


_Prep = tuple[EntryKind, str | None, int | None, str, None]


def _prepared(rng: random.Random, count: int) -> list[_Prep]:
    sessions = ["so_abc", None, 'odd "session" \\ é\n', "so_\u2028x"]
    data = [
        {"text": "SELECT 1", "n": 1},
        {"text": "é'\"\\\n\t\x01 \u2028", "rows": None, "ms": 0.125},
        {"event": "closed", "principal": {"sub": "repo:o/r:ref:refs/heads/main"}},
    ]
    out = []
    for _ in range(count):
        kind = rng.choice(list(EntryKind))
        text = CanonicalJson(
            json.dumps(rng.choice(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        )
        ref = rng.choice([None, 1, 2**40])
        out.append((kind, rng.choice(sessions), ref, text, None))
    return out


# The audit chain's published vectors: the inputs of each append and its exact lines.
VECTORS: dict[str, Any] = json.loads(
    Path(chain.__file__).with_name("chain_vectors.json").read_text(encoding="utf-8")
)
CHAINS: list[dict[str, Any]] = VECTORS["chains"]


def _vector_inputs(vector: dict[str, Any]) -> list[_Prep]:
    return [
        (EntryKind(e["kind"]), e["session_id"], e["ref"], CanonicalJson(e["data"]), None)
        for e in vector["entries"]
    ]


@pytest.mark.parametrize("vector", CHAINS, ids=[v["name"] for v in CHAINS])
def test_chain_lines_give_the_vectors_bytes(vector: dict[str, Any]) -> None:
    prepared = _vector_inputs(vector)
    data, last = speedups.chain_lines(
        prepared, vector["last_seq"], vector["last_hash"], vector["ts"]
    )
    assert data.decode() == "".join(e["journal_line"] for e in vector["entries"])
    assert last == vector["entries"][-1]["hash"]


@pytest.mark.parametrize("count", [1, 2, 7, 50])
def test_chain_lines_are_what_the_python_chain_writes(count: int) -> None:
    rng = random.Random(count)
    prepared = _prepared(rng, count)
    last_seq, last_hash, ts = 41, hashlib.sha256(b"x").hexdigest(), "2026-11-29T04:00:00.000001Z"
    lines: list[str] = []
    rows = _chain_rows(prepared, last_seq, last_hash, ts, lines)
    data, last = speedups.chain_lines(prepared, last_seq, last_hash, ts)
    assert data == "".join(lines).encode()
    assert last == rows[-1][7]


@pytest.mark.parametrize("vector", CHAINS, ids=[v["name"] for v in CHAINS])
def test_journal_append_writes_the_vectors_entries_stamped_now(
    tmp_path: Path, vector: dict[str, Any]
) -> None:
    prepared = _vector_inputs(vector)
    last_seq, last_hash = vector["last_seq"], vector["last_hash"]
    path = tmp_path / "j.audit.jsonl"
    path.write_bytes(b"0123456789")  # where this process believes the file ends
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        before = datetime.now(UTC)
        end, last = speedups.journal_append(fd, prepared, last_seq, last_hash, 10, True)
        after = datetime.now(UTC)
        # Another process appended meanwhile: nothing is written, the caller re-reads.
        following = last_seq + len(prepared)
        assert speedups.journal_append(fd, prepared, following, last, 10, False) is None
    finally:
        os.close(fd)
    written = path.read_bytes()
    assert end == len(written)
    ts = json.loads(written[10:].splitlines()[0])["ts"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ts)
    stamped = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= stamped <= after + timedelta(seconds=1)
    # the vector's lines but for the stamp (and so the hashes): what chain_lines
    # gives with this stamp, which is what the Python chain gives
    lines, expected_last = speedups.chain_lines(prepared, last_seq, last_hash, ts)
    assert written[10:] == lines
    assert last == expected_last
    python_lines: list[str] = []
    rows = _chain_rows(prepared, last_seq, last_hash, ts, python_lines)
    assert lines == "".join(python_lines).encode() and rows[-1][7] == last
    for line, entry in zip(written[10:].splitlines(), vector["entries"], strict=True):
        got = json.loads(line)
        assert (got["seq"], got["kind"], got["session_id"], got["ref"]) == (
            entry["seq"], entry["kind"], entry["session_id"], entry["ref"]
        )  # fmt: skip
        assert json.dumps(got["data"], sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False) == entry["data"]  # fmt: skip


def test_journal_append_reports_the_failed_call(tmp_path: Path) -> None:
    path = tmp_path / "j.audit.jsonl"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)  # write() fails: EBADF
    try:
        with pytest.raises(OSError) as failed:
            speedups.journal_append(fd, _prepared(random.Random(4), 2), 0, "0" * 64, 0, False)
        assert failed.value.errno == errno.EBADF
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # and the lock was let go
    finally:
        os.close(fd)


def test_sha256_agrees_with_hashlib_across_block_boundaries() -> None:
    """Every body length around the 64-byte block and padding boundaries."""
    prev = "0" * 64
    for size in range(0, 300):
        text = CanonicalJson(json.dumps({"t": "x" * size}, separators=(",", ":")))
        prepared = [(EntryKind.SESSION, "s", None, text, None)]
        lines: list[str] = []
        rows = _chain_rows(prepared, 0, prev, "ts", lines)
        _, last = speedups.chain_lines(prepared, 0, prev, "ts")
        assert last == rows[-1][7], size


@pytest.mark.parametrize("portable", [False, True], ids=["libcrypto", "portable"])
def test_both_sha256_implementations_agree_with_hashlib(portable: bool) -> None:
    rng = random.Random(7)
    for size in [*range(0, 200), 1000, 4096, 65537]:
        data = rng.randbytes(size)
        assert speedups.sha256_hex(data, portable) == hashlib.sha256(data).hexdigest(), size


def test_chain_lines_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        speedups.chain_lines([], 0, "abc", "ts")
    with pytest.raises(TypeError):
        speedups.chain_lines([("statement",)], 0, "0" * 64, "ts")


def test_pure_python_is_asked_for_by_environment() -> None:
    import subprocess
    import sys

    probe = "from runner._native.loader import native; print(native is None)"
    for value, pure in (("1", "True"), ("0", "False"), ("", "False")):
        out = subprocess.run(
            [sys.executable, "-c", probe],
            env={"SIGNOFF_PURE_PYTHON": value, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == pure, value
