"""One connection's burst does not stall the others: a client that sends tens of
thousands of Sync messages and a Query in one write is answered in full, and
another session's query is answered while the burst is handled. Bounded: the
burst must be answered within a generous bound (a quadratic relay takes minutes
for it, a linear one seconds); nothing measures or asserts a duration."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_harness import Gateway, running_gateway
from pgclient import RawClient

from runner.gateway import wire

# Enough that a per-answer rescan of the FIFO (quadratic: minutes here) cannot
# finish within the bound below, while a linear relay answers in seconds.
SYNCS = 100_000
BOUND_S = 60


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        yield running


def test_a_burst_of_syncs_is_answered_and_does_not_stall_another_session(
    gateway: Gateway,
) -> None:
    burst_session = gateway.session()
    client = RawClient(gateway.pg_port)
    client.sock.settimeout(60)
    assert client.startup(burst_session["session_id"], "ehr", burst_session["secret"])[-1][0] == "Z"
    answers: list[str] = []

    def burst() -> None:
        client.send(b"S\x00\x00\x00\x04" * SYNCS + wire.query("SELECT 41 + 1"))
        got = 0
        while got < SYNCS + 1:
            kind, _ = client.message()
            answers.append(kind)
            if kind == "Z":
                got += 1

    sender = threading.Thread(target=burst)
    sender.start()
    try:
        # Another session, meanwhile: answered (its connect and query would time out
        # if the burst held the gateway's event loop).
        other = gateway.session()
        with gateway.connect(other, connect_timeout=20) as conn:
            conn.execute("SET statement_timeout = '20s'")
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        sender.join(BOUND_S)
        client.close()
    assert not sender.is_alive(), f"the burst was not answered within {BOUND_S} s"
    assert answers.count("Z") == SYNCS + 1
    assert "D" in answers  # the query's row came back after every Sync's answer
