"""The audit chain's published test vectors (runner/audit/chain_vectors.json) against
the Python chain code: the canonical text, prev_hash, hash and journal line of each
entry, byte for byte. C implementations are checked against the same file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.audit import chain
from runner.audit.chain import (
    GENESIS_HASH,
    AuditEntry,
    CanonicalJson,
    EntryKind,
    NewEntry,
    chain_rows,
    entry_hash,
    prepare,
)
from runner.plan.model import canonical_json, sha256_hex

VECTORS_PATH = Path(chain.__file__).with_name("chain_vectors.json")
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
CHAINS: list[dict[str, Any]] = VECTORS["chains"]


def _inputs(vector: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (EntryKind(e["kind"]), e["session_id"], e["ref"], CanonicalJson(e["data"]), None)
        for e in vector["entries"]
    ]


def test_the_vectors_file_is_what_the_docstring_describes() -> None:
    assert VECTORS["format"] == "signoff-audit-chain-vectors/1"
    kinds = {e["kind"] for vector in CHAINS for e in vector["entries"]}
    assert kinds == {kind.value for kind in EntryKind}  # every kind has a vector
    assert CHAINS[0]["last_seq"] == 0 and CHAINS[0]["last_hash"] == GENESIS_HASH
    assert any(vector["last_seq"] > 0 for vector in CHAINS)  # and a chain's tail
    for vector in CHAINS:
        for entry in vector["entries"]:
            assert set(entry) == {
                "kind", "session_id", "ref", "data", "seq", "prev_hash", "canonical", "hash",
                "journal_line",
            }  # fmt: skip


@pytest.mark.parametrize("vector", CHAINS, ids=[v["name"] for v in CHAINS])
def test_chain_rows_give_the_vectors_bytes(vector: dict[str, Any]) -> None:
    lines: list[str] = []
    rows = chain_rows(_inputs(vector), vector["last_seq"], vector["last_hash"], vector["ts"], lines)
    expected = vector["entries"]
    assert len(rows) == len(lines) == len(expected)
    for row, line, want in zip(rows, lines, expected, strict=True):
        seq, ts, kind, session_id, ref, data, prev_hash, digest = row
        assert (seq, ts, kind, session_id, ref, data) == (
            want["seq"], vector["ts"], want["kind"], want["session_id"], want["ref"], want["data"],
        )  # fmt: skip
        assert (prev_hash, digest) == (want["prev_hash"], want["hash"])
        assert line == want["journal_line"]
    assert rows[0][6] == vector["last_hash"] and rows[0][0] == vector["last_seq"] + 1


@pytest.mark.parametrize("vector", CHAINS, ids=[v["name"] for v in CHAINS])
def test_the_vectors_follow_the_hash_rule(vector: dict[str, Any]) -> None:
    """Each vector is the DESIGN.md rule worked out: the canonical text is
    canonical_json of the body, the hash sha256 over prev_hash and it, the journal
    line that text with the hash added last."""
    prev = vector["last_hash"]
    for want in vector["entries"]:
        entry = AuditEntry(
            seq=want["seq"],
            ts=vector["ts"],
            kind=EntryKind(want["kind"]),
            session_id=want["session_id"],
            data=json.loads(want["data"]),
            prev_hash=want["prev_hash"],
            hash=want["hash"],
            ref=want["ref"],
        )
        assert want["prev_hash"] == prev
        assert canonical_json(entry.body()) == want["canonical"]
        assert sha256_hex(prev + want["canonical"]) == want["hash"]
        assert entry_hash(prev, entry.body()) == want["hash"]
        assert want["journal_line"] == want["canonical"][:-1] + f',"hash":"{want["hash"]}"}}\n'
        assert json.loads(want["journal_line"]) == entry.to_json()
        prev = want["hash"]


@pytest.mark.parametrize("vector", CHAINS, ids=[v["name"] for v in CHAINS])
def test_data_given_as_a_dict_is_encoded_to_the_vectors_text(vector: dict[str, Any]) -> None:
    """The store's own encoding of data (not pre-encoded text) gives the same bytes."""
    news = [
        NewEntry(EntryKind(e["kind"]), e["session_id"], json.loads(e["data"]), e["ref"])
        for e in vector["entries"]
    ]
    prepared = prepare(news)
    assert [p[3] for p in prepared] == [e["data"] for e in vector["entries"]]
    assert [p[4] for p in prepared] == [json.loads(e["data"]) for e in vector["entries"]]
    rows = chain_rows(prepared, vector["last_seq"], vector["last_hash"], vector["ts"])
    assert rows[-1][7] == vector["entries"][-1]["hash"]


def _entries(vector: dict[str, Any]) -> list[AuditEntry]:
    ts = vector["ts"]
    return [
        AuditEntry(
            e["seq"],
            ts,
            EntryKind(e["kind"]),
            e["session_id"],
            json.loads(e["data"]),
            e["prev_hash"],
            e["hash"],
            e["ref"],
        )
        for e in vector["entries"]
    ]


def test_the_vectors_verify_and_an_edit_does_not() -> None:
    from runner.audit.verify import verify_chain

    genesis, tail = CHAINS
    report = verify_chain(_entries(genesis))
    assert report.ok and report.count == len(genesis["entries"]) and report.incomplete == ()
    assert report.last_hash == genesis["entries"][-1]["hash"]
    # The tail is a format vector (its outcomes refer to no statement of theirs):
    # its links verify after the entry it follows, up to the first such outcome.
    after = (tail["last_seq"], tail["last_hash"])
    report = verify_chain(_entries(tail), after=after)
    assert report.first_bad_seq == 44 and "outcome refers to entry 42" in str(report.problem)
    assert verify_chain(_entries(tail)).problem == "seqs 1-41 missing (gap after 0)"

    edited = _entries(genesis)
    statement = next(n for n, e in enumerate(edited) if e.kind is EntryKind.STATEMENT)
    data = dict(edited[statement].data, text="SELECT 2")
    edited[statement] = AuditEntry(**{**edited[statement].__dict__, "data": data})
    report = verify_chain(edited)
    assert not report.ok and report.first_bad_seq == edited[statement].seq
    assert report.problem == f"entry {edited[statement].seq}: hash does not match its contents"


def test_verifying_needs_nothing_of_the_gateway() -> None:
    """An auditor checks a chain with runner.audit alone: no gateway module is imported
    (the writer is the one part that serves the gateway)."""
    import subprocess
    import sys

    probe = (
        "import sys, runner.audit.chain, runner.audit.verify, runner.audit.records, "
        "runner.audit.entries; "
        "print(sorted(m for m in sys.modules if m.startswith('runner.gateway')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
