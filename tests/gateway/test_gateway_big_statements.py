"""A statement over gateway.max_statement_bytes is not analysed (its tokens and tree
are where memory and time would go): one unanalysable finding, refused without a
grant, and the gateway's memory stays bounded whatever a client sends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from gateway_harness import Gateway, running_gateway


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        yield running


def resident_bytes() -> int:
    """This process's resident set now (the in-process gateway's included)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_a_two_megabyte_query_is_refused_unanalysed_with_memory_bounded(
    gateway: Gateway,
) -> None:
    session = gateway.session()
    text = "SELECT " + "+".join(["1"] * 1_000_000)  # about 2 MB
    before = resident_bytes()
    with gateway.connect(session) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute(text.encode())
        assert "max_statement_bytes" in str(refused.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the connection is usable
    grown = resident_bytes() - before
    # Analysing it took the gateway from about 116 MiB to 1.36 GiB; bounded now.
    assert grown < 300 * 1024 * 1024, f"the gateway grew by {grown >> 20} MiB"
    records = gateway.audit(session)
    [big] = [r for r in records if str(r.get("text", "")).startswith("SELECT 1+1+")]
    assert big["decision"] == "blocked"
    assert big["fingerprint"].startswith("sha256:")
