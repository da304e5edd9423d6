"""A large text (below gateway.max_statement_bytes) is analysed off the event loop:
while one session's 200 KiB expression is being analysed (seconds), another
session's queries are decided and answered. Observed through the audit chain's
order, not a clock: with the analysis on the loop every query of the other session
sent after the large text was read is decided after it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_harness import Gateway, running_gateway
from pgclient import RawClient

from runner.gateway import wire

LARGE = "SELECT " + "+".join(["1"] * 100_000)  # about 200 KiB: seconds of analysis
AHEAD = 5  # the other session's queries decided before the large text, at least
BOUND = 10_000  # the other session's queries, at most (a bound, should the large one hang)


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        yield running


def test_another_session_is_served_while_a_large_text_is_analysed(gateway: Gateway) -> None:
    large_session, other_session = gateway.session(), gateway.session()
    large = RawClient(gateway.pg_port)
    large.sock.settimeout(120)
    assert large.startup(large_session["session_id"], "ehr", large_session["secret"])[-1][0] == "Z"
    answered = threading.Event()
    large_answer: list[str] = []

    def send_large() -> None:
        large.send(wire.query(LARGE))
        large_answer.extend(kind for kind, _ in large.until("Z"))
        answered.set()

    other = RawClient(gateway.pg_port)
    other.sock.settimeout(120)
    assert other.startup(other_session["session_id"], "ehr", other_session["secret"])[-1][0] == "Z"
    sender = threading.Thread(target=send_large)
    sender.start()
    try:
        sent = 0
        while not answered.is_set() and sent < BOUND:
            other.send(wire.query(f"SELECT {sent}"))
            assert [kind for kind, _ in other.until("Z")][-1] == "Z"
            sent += 1
    finally:
        sender.join(120)
        large.close()
        other.close()
    assert not sender.is_alive() and large_answer[-1] == "Z"
    [large_record] = [r for r in gateway.audit(large_session) if r.get("text") == LARGE]
    decided_ahead = [r for r in gateway.audit(other_session) if r["seq"] < large_record["seq"]]
    assert len(decided_ahead) >= AHEAD, (
        f"{len(decided_ahead)} of the other session's {sent} queries were decided "
        "before the large text: its analysis held the event loop"
    )


def test_a_large_text_decided_aside_keeps_its_place_in_both_protocols(gateway: Gateway) -> None:
    """The messages after a text decided aside are read only once it is decided, in
    order: a Parse with its Bind, Execute and Sync behind it (psycopg), and simple
    queries pipelined behind a large one in the same write."""
    session = gateway.session()
    long = f"length('{'a' * 80_000}')"  # about 80 KiB of text
    with gateway.connect(session) as conn:
        assert conn.execute(f"SELECT %s::int + {long}", (1,)).fetchone() == (80_001,)
    client = RawClient(gateway.pg_port)
    client.sock.settimeout(120)
    try:
        assert client.startup(session["session_id"], "ehr", session["secret"])[-1][0] == "Z"
        client.send(wire.query("SELECT 1"), wire.query(f"SELECT {long}"), wire.query("SELECT 3"))
        rows = [[body for kind, body in client.until("Z") if kind == "D"] for _ in range(3)]
    finally:
        client.close()
    values = [int(row[0][6:]) for row in rows]  # DataRow: count, length, then the value
    assert values == [1, 80_000, 3]
