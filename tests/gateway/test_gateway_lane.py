"""The proxy's C fast lane (runner/_lane.c) changes nothing a client or an auditor sees.

Each test runs the same client session twice through one in-process gateway:
once with the lane (``service.fast_lanes``, the default) and once with every
statement left to the Python relay, the reference. Both runs must give the
client the same messages, byte for byte, and the audit journal the same
records (the same statement entries; the same outcomes but for their
durations). Each also checks that the lane did carry statements, so the
comparison is not between two runs of the Python relay.

The sessions are built to walk the lane through its hand-overs: a server error,
a notice, a result larger than one read, a transaction, pipelined queries (in
one write and in two), a client that disconnects while its statement runs, and
a journal that cannot be written.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest
from audit_journal import journal_path, read_entries
from certificates import make_certificate
from gateway_harness import Gateway, running_gateway
from pgclient import RawClient, bind, describe_portal, error_of, execute

from runner._native.loader import native
from runner.audit.entries import outcome_data_json
from runner.gateway import wire
from runner.gateway.model import Outcome
from runner.gateway.service import GatewayService

pytestmark = pytest.mark.skipif(native is None, reason="the C extension is not built")

Messages = list[tuple[str, bytes]]
Script = Callable[[RawClient], list[Messages]]


class Carried(NamedTuple):
    """What the lane did in a run: audit entries it queued (the statements it decided
    from its caches and those the Python relay decided and gave it to carry), and
    how many statements it decided itself."""

    entries: int
    decided: int


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        with psycopg.connect(scratch_db_url, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION noisy(i int) RETURNS int LANGUAGE plpgsql AS "
                "$$BEGIN RAISE NOTICE 'noisy %', i; RETURN i; END$$"
            )
            conn.execute("CREATE TYPE mood AS ENUM ('calm', 'busy')")
            # The upstream role is an owner, not a superuser: ALTER TYPE must succeed
            # for the label to count (the analysis follows what the server confirmed).
            conn.execute(f"ALTER TYPE mood OWNER TO {running.role}")
        yield running


def service_of(gateway: Gateway) -> GatewayService:
    service = gateway.running.running.service
    assert service is not None
    return service


def session_entries(gateway: Gateway, session_id: str) -> list[dict[str, Any]]:
    return [
        entry
        for entry in read_entries(journal_path(gateway.state_path))
        if entry["session_id"] == session_id
    ]


def records(gateway: Gateway, session_id: str) -> list[Any]:
    """The session's audit trail without what differs between two runs of the same
    statements (seqs, times, the session id): statement entries whole, each with its
    outcome (duration dropped), and session events by name and reason."""
    entries = session_entries(gateway, session_id)
    outcomes = {e["ref"]: e["data"] for e in entries if e["kind"] == "outcome"}
    trail: list[Any] = []
    for entry in entries:
        if entry["kind"] == "statement":
            outcome = dict(outcomes.get(entry["seq"], {"missing": True}))
            outcome.pop("duration_ms", None)
            trail.append(("statement", entry["data"], outcome))
        elif entry["kind"] == "session":
            data = entry["data"]
            if data["event"] not in ("session-created", "authenticated"):
                trail.append(("event", data["event"], data.get("reason")))
    return trail


def run_twice(gateway: Gateway, script: Script) -> tuple[list[Messages], list[Any], Carried]:
    """(what the client received, the audit trail, what the lane did) of the script
    with the lane; asserts the run without it gave the same."""
    service = service_of(gateway)
    results = []
    for lanes in (True, False):
        service.fast_lanes = lanes
        before = Carried(service.writer.stats.lane_entries, service.writer.lane_queue.decided)
        session = gateway.session()
        client = RawClient(gateway.pg_port)
        try:
            started = client.startup(session["session_id"], "ehr", session["secret"])
            assert started[-1][0] == "Z", started
            # The relay (and its lane) takes over the socket just after the startup's
            # ReadyForQuery: a message that arrives before is the relay's alone, and
            # the lane's counts below would vary from run to run.
            time.sleep(0.1)
            received = script(client)
        finally:
            client.close()
        wait_closed(gateway, session["session_id"])
        carried = Carried(
            service.writer.stats.lane_entries - before.entries,
            service.writer.lane_queue.decided - before.decided,
        )
        results.append((received, records(gateway, session["session_id"]), carried))
    (with_lane, trail, carried), (without, reference, none) = results
    assert none == (0, 0)
    assert with_lane == without
    assert trail == reference
    return with_lane, trail, carried


def wait_closed(gateway: Gateway, session_id: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(
            e["kind"] == "session" and e["data"]["event"] == "closed"
            for e in session_entries(gateway, session_id)
        ):
            return
        time.sleep(0.02)
    raise AssertionError(f"session {session_id} was not closed in the journal")


def queries(client: RawClient, texts: Sequence[str]) -> list[Messages]:
    return [client.query(text) for text in texts]


def settled_query(gateway: Gateway, client: RawClient, text: str) -> list[Messages]:
    """Run ``text`` and wait until every statement in the journal has its outcome
    (written after the answer): nothing is still queued when the test changes the
    writer."""

    def unsettled() -> set[int]:
        entries = read_entries(journal_path(gateway.state_path))
        statements = {entry["seq"] for entry in entries if entry["kind"] == "statement"}
        return statements - {entry["ref"] for entry in entries if entry["kind"] == "outcome"}

    got = queries(client, [text])
    deadline = time.monotonic() + 10
    while unsettled() and time.monotonic() < deadline:
        time.sleep(0.01)
    return got


def leave_while_held(gateway: Gateway, client: RawClient, *messages: bytes) -> None:
    """Send ``messages`` and disconnect while their statement waits for its entry:
    the next commit of the audit log comes late (a slow disk, say)."""
    writer = service_of(gateway).writer
    flush = writer._flush_inline
    loop = gateway.running._loop
    assert loop is not None
    writer._flush_inline = lambda: loop.call_later(0.4, flush)  # type: ignore[method-assign]
    try:
        client.send(*messages)
        time.sleep(0.1)
        client.sock.shutdown(socket.SHUT_RDWR)
        client.close()
        time.sleep(0.6)
    finally:
        writer._flush_inline = flush  # type: ignore[method-assign]


def kinds(messages: Messages) -> str:
    return "".join(kind for kind, _ in messages)


# -- the steady state ---------------------------------------------------------------------


def test_repeated_reads_are_carried_by_the_lane_and_recorded_alike(gateway: Gateway) -> None:
    texts = [f"SELECT mrn FROM patients WHERE id = {i}" for i in range(1, 21)]
    received, trail, carried = run_twice(gateway, lambda c: queries(c, texts))
    # The first text is decided (and its mask cached) by Python, the other 19 by the
    # lane; the lane carries all 20: a statement entry and an outcome entry each.
    assert carried == (2 * 20, 19)
    assert [kinds(m) for m in received] == ["TDCZ"] * 20
    statements = [data for kind, data, _ in trail if kind == "statement"]
    assert [s["text"] for s in statements] == texts
    assert {s["decision"] for s in statements} == {"allowed"}
    assert len({s["fingerprint"] for s in statements}) == 1
    assert len({s["sha256"] for s in statements}) == 20
    outcomes = [outcome for kind, _, outcome in trail if kind == "statement"]
    assert all(o["tag"] == "SELECT 1" and o["rows"] == 1 for o in outcomes)
    assert trail[-1] == ("event", "closed", "client terminated") or trail[-1][1] == "closed"


def test_lane_entries_verify_in_the_chain(gateway: Gateway) -> None:
    texts = [f"SELECT id FROM patients WHERE mrn = 'M{i}'" for i in range(1, 6)]
    _, _, carried = run_twice(gateway, lambda c: queries(c, texts))
    assert carried == (2 * 5, 4)
    verified = gateway.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


# -- hand-overs to the Python relay ----------------------------------------------------------


def test_a_server_error_mid_lane_is_recorded_as_python_records_it(gateway: Gateway) -> None:
    texts = [
        "SELECT 10 / (id - 3) FROM patients WHERE id = 4",
        "SELECT 10 / (id - 3) FROM patients WHERE id = 5",
        "SELECT 10 / (id - 3) FROM patients WHERE id = 3",  # division by zero
        "SELECT 10 / (id - 3) FROM patients WHERE id = 6",
    ]
    received, trail, carried = run_twice(gateway, lambda c: queries(c, texts))
    assert error_of(received[2])["C"] == "22012"
    outcomes = [outcome for kind, _, outcome in trail if kind == "statement"]
    assert outcomes[2]["status"] == "failed" and outcomes[2]["sqlstate"] == "22012"
    assert outcomes[3]["status"] == "completed"
    # The lane decides the last three and carries all four; the failed one's outcome
    # is the Python relay's.
    assert carried == (2 * 4 - 1, 3)


def test_notices_and_large_results_are_handed_over(gateway: Gateway) -> None:
    texts = [
        "SELECT noisy(1)",
        "SELECT noisy(2)",  # a NoticeResponse before the rows
        "SELECT repeat('x', 10) FROM patients WHERE id = 1",
        "SELECT repeat('y', 300000) FROM patients WHERE id = 2",  # more than one read
        "SELECT repeat('z', 20) FROM patients WHERE id = 3",
    ]
    received, trail, carried = run_twice(gateway, lambda c: queries(c, texts))
    assert kinds(received[1]).startswith("TN") or "N" in kinds(received[1])
    assert len(received[3][1][1]) > 300000
    outcomes = [outcome for kind, _, outcome in trail if kind == "statement"]
    assert [o["tag"] for o in outcomes] == ["SELECT 1"] * 5
    assert carried.decided == 3  # noisy(2) and the two repeats; two were handed over


def test_transactions_and_what_the_lane_does_not_take(gateway: Gateway) -> None:
    texts = [
        "SELECT mrn FROM patients WHERE id = 1",
        "BEGIN",
        "SELECT mrn FROM patients WHERE id = 2",  # in a transaction: Python's
        "COMMIT",
        "SELECT mrn FROM patients WHERE id = 3",  # the lane again
        "SELECT mrn FROM patients WHERE id = 4; SELECT 1",  # two statements
        "SELECT mrn FROM patients WHERE mrn = 'é'",  # not ASCII
        "SELECT 'standard_conforming_strings'",  # the literal guard
        "DROP TABLE visits_old",  # refused
        "SELECT mrn FROM patients WHERE id = 5",
        "",  # an empty query
    ]
    received, _trail, carried = run_twice(gateway, lambda c: queries(c, texts))
    assert error_of(received[8])["C"] == "42501"
    assert kinds(received[10]) == "IZ"
    # Decided by the lane: ids 3 and 5. Carried: every one-statement Query Python
    # allowed (the read in the transaction included), not the refusals, nor BEGIN and
    # COMMIT: their CommandComplete changes the session's analysis, so the relay
    # reads it (policy.analysis: the state is what the server confirmed).
    assert carried == (2 * 5, 2)


def test_copy_is_handed_over(gateway: Gateway) -> None:
    """COPY in a one-statement Query: decided by the relay, carried by the lane until
    the server asks for or sends data, then the relay's."""
    with psycopg.connect(gateway.upstream_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE copied (id int)")
        conn.execute(f"ALTER TABLE copied OWNER TO {gateway.role}")  # the upstream role's

    def script(client: RawClient) -> list[Messages]:
        got = queries(client, ["COPY (SELECT id FROM patients WHERE id < 4 ORDER BY id) TO STDOUT"])
        client.send(wire.query("COPY copied FROM STDIN"))
        got.append(client.until("G"))
        client.send(wire.message(wire.COPY_DATA, b"1\n2\n"), wire.message(wire.COPY_DONE, b""))
        got.append(client.until("Z"))
        got += queries(client, ["SELECT 1"])  # (the table grows from run to run)
        return got

    received, trail, carried = run_twice(gateway, script)
    assert kinds(received[0]) == "HdddcCZ"
    assert kinds(received[2]) == "CZ"
    outcomes = [outcome for kind, _, outcome in trail if kind == "statement"]
    assert [o["tag"] for o in outcomes[:2]] == ["COPY 3", "COPY 2"]
    assert carried.entries >= 2  # at least the statement entries of the two COPYs


def test_enum_labels_added_stop_the_lane(gateway: Gateway) -> None:
    def script(client: RawClient) -> list[Messages]:
        got = queries(
            client,
            [
                "SELECT mrn FROM patients WHERE id = 1",
                "SELECT mrn FROM patients WHERE id = 2",
                "BEGIN",
                "ALTER TYPE mood ADD VALUE 'tired'",
                "ROLLBACK",
            ],
        )
        # From here cached verdicts on reads no longer hold (policy._cached_reads_hold).
        queue = service_of(gateway).writer.lane_queue
        before = queue.decided
        got += queries(client, ["SELECT mrn FROM patients WHERE id = 3"])
        assert queue.decided == before  # decided by Python (then carried)
        return got

    _, _, carried = run_twice(gateway, script)
    assert carried.decided == 1


def test_pipelined_queries_in_one_write_and_in_two(gateway: Gateway) -> None:
    def script(client: RawClient) -> list[Messages]:
        got = queries(client, ["SELECT mrn FROM patients WHERE id = 1"])
        client.send(wire.query("SELECT mrn FROM patients WHERE id = 2"))
        client.send(wire.query("SELECT mrn FROM patients WHERE id = 3"))
        got += [client.until("Z"), client.until("Z")]
        client.send(
            wire.query("SELECT mrn FROM patients WHERE id = 4")
            + wire.query("SELECT mrn FROM patients WHERE id = 5")
        )
        got += [client.until("Z"), client.until("Z")]
        return got

    received, trail, _ = run_twice(gateway, script)
    assert [kinds(m) for m in received] == ["TDCZ"] * 5
    texts = [data["text"] for kind, data, _ in trail if kind == "statement"]
    assert texts == [f"SELECT mrn FROM patients WHERE id = {i}" for i in range(1, 6)]


def test_extended_protocol_beside_the_lane(gateway: Gateway) -> None:
    def script(client: RawClient) -> list[Messages]:
        got = queries(client, ["SELECT mrn FROM patients WHERE id = 1"])
        client.send(
            wire.parse(b"", "SELECT mrn FROM patients WHERE id = $1"),
            bind(b"", b"", [b"7"]),
            describe_portal(),
            execute(),
            wire.sync(),
        )
        got.append(client.until("Z"))
        got += queries(client, ["SELECT mrn FROM patients WHERE id = 2"])
        return got

    received, _, carried = run_twice(gateway, script)
    assert kinds(received[1]) == "12TDCZ"
    assert carried == (2 * 3, 1)  # the one-shot: decided by the relay, carried by the lane


def test_client_gone_while_the_lane_has_its_statement_in_flight(gateway: Gateway) -> None:
    def script(client: RawClient) -> list[Messages]:
        got = queries(client, ["SELECT pg_sleep(0.01)"])
        client.send(wire.query("SELECT pg_sleep(2)"))
        time.sleep(0.5)  # forwarded and running
        client.sock.shutdown(socket.SHUT_RDWR)
        client.close()
        return got

    _, trail, carried = run_twice(gateway, script)
    statements = [(data["text"], outcome) for kind, data, outcome in trail if kind == "statement"]
    assert statements[1][0] == "SELECT pg_sleep(2)"
    assert statements[1][1]["status"] == "connection-lost"
    assert carried == (2 + 1, 1)  # the second's outcome is the Python relay's


def test_client_gone_while_its_statement_waits_for_its_entry(gateway: Gateway) -> None:
    """The close waits for the held statement's entry and records it not-run."""

    def script(client: RawClient) -> list[Messages]:
        got = settled_query(gateway, client, "SELECT mrn FROM patients WHERE id = 1")
        leave_while_held(gateway, client, wire.query("SELECT mrn FROM patients WHERE id = 2"))
        return got

    _, trail, carried = run_twice(gateway, script)
    statements = [(data["text"], outcome) for kind, data, outcome in trail if kind == "statement"]
    assert statements[1][0] == "SELECT mrn FROM patients WHERE id = 2"
    assert statements[1][1]["status"] == "not-run"
    assert trail[-1][:2] == ("event", "closed")
    assert carried == (2 + 1, 1)  # the second: its statement entry


def test_a_journal_that_cannot_be_written_refuses_the_lanes_statement(
    gateway: Gateway,
) -> None:
    def script(client: RawClient) -> list[Messages]:
        got = settled_query(gateway, client, "SELECT mrn FROM patients WHERE id = 1")
        journal = service_of(gateway).store._journal  # type: ignore[attr-defined]
        real = journal.fd
        broken = os.open(os.devnull, os.O_RDONLY)  # appends fail: EBADF
        journal.fd = broken
        try:
            got += queries(client, ["SELECT mrn FROM patients WHERE id = 2"])
        finally:
            journal.fd = real
            os.close(broken)
        got += queries(client, ["SELECT mrn FROM patients WHERE id = 3"])
        return got

    received, trail, _ = run_twice(gateway, script)
    assert error_of(received[1])["C"] == "58000"
    assert kinds(received[2]) == "TDCZ"
    texts = [data["text"] for kind, data, _ in trail if kind == "statement"]
    assert "SELECT mrn FROM patients WHERE id = 2" not in texts


def test_an_outcome_whose_write_failed_goes_with_the_next_write(gateway: Gateway) -> None:
    """The journal fails just when a statement's outcome is written: the outcome is
    kept and written with the next batch, by the lane as by the relay."""
    writer = service_of(gateway).writer

    def script(client: RawClient) -> list[Messages]:
        got = settled_query(gateway, client, "SELECT mrn FROM patients WHERE id = 1")
        flush = writer._flush_inline
        loop = gateway.running._loop
        assert loop is not None
        writer._flush_inline = lambda: loop.call_later(0.3, flush)  # type: ignore[method-assign]
        journal = service_of(gateway).store._journal  # type: ignore[attr-defined]
        real, broken = journal.fd, os.open(os.devnull, os.O_RDONLY)
        try:
            # Recorded (late), forwarded, answered: its outcome's write comes 0.3 s on.
            got += queries(client, ["SELECT mrn FROM patients WHERE id = 2"])
            journal.fd = broken
            time.sleep(0.5)
        finally:
            journal.fd = real
            os.close(broken)
            writer._flush_inline = flush  # type: ignore[method-assign]
        got += settled_query(gateway, client, "SELECT 1")
        return got

    _, trail, carried = run_twice(gateway, script)
    statements = [(data["text"], outcome) for kind, data, outcome in trail if kind == "statement"]
    assert [text for text, _ in statements] == [
        "SELECT mrn FROM patients WHERE id = 1",
        "SELECT mrn FROM patients WHERE id = 2",
        "SELECT 1",
    ]
    assert all(outcome.get("status") == "completed" for _, outcome in statements)
    assert carried.decided == 1


# -- the extended protocol -----------------------------------------------------------------


def one_shot(
    client: RawClient,
    text: str,
    params: Sequence[bytes] = (),
    *,
    describe: bool = True,
    statement: bytes = b"",
) -> Messages:
    """What a driver sends for one parameterised query (pgbench -M extended, libpq's
    PQexecParams): Parse, Bind, Describe, Execute, Sync in one write."""
    client.send(
        wire.parse(statement, text),
        bind(b"", statement, params),
        *([describe_portal()] if describe else []),
        execute(),
        wire.sync(),
    )
    return client.until("Z")


ACCOUNT = "SELECT mrn FROM patients WHERE id = $1"


def test_repeated_one_shot_queries_are_carried_by_the_lane(gateway: Gateway) -> None:
    def script(client: RawClient) -> list[Messages]:
        got = [one_shot(client, ACCOUNT, [str(i).encode()]) for i in range(1, 11)]
        got += [one_shot(client, ACCOUNT, [b"11"], describe=False)]
        return got

    received, trail, carried = run_twice(gateway, script)
    assert [kinds(m) for m in received] == ["12TDCZ"] * 10 + ["12DCZ"]
    # The lane decides all but the first (whose text the relay decides) and carries all.
    assert carried == (2 * 11, 10)
    statements = [(data, outcome) for kind, data, outcome in trail if kind == "statement"]
    assert [data["text"] for data, _ in statements] == [ACCOUNT] * 11
    assert all(outcome["tag"] == "SELECT 1" for _, outcome in statements)


def test_one_shot_writes_in_a_transaction_are_decided_by_the_relay(gateway: Gateway) -> None:
    """Writes and reads in a transaction as a driver sends them: the relay decides
    each (nothing of the lane's caches serves a transaction), the lane carries them."""
    touch = "UPDATE patients SET mrn = mrn WHERE id = $1"

    def script(client: RawClient) -> list[Messages]:
        got = queries(client, ["BEGIN"])
        got += [one_shot(client, touch, [str(i).encode()]) for i in (1, 2, 3)]
        got += [one_shot(client, ACCOUNT, [b"4"]), one_shot(client, touch, [b"99"])]
        got += queries(client, ["COMMIT"])
        return got

    received, trail, carried = run_twice(gateway, script)
    assert [kinds(m) for m in received] == ["CZ"] + ["12nCZ"] * 3 + ["12TDCZ", "12nCZ", "CZ"]
    outcomes = [outcome for kind, _, outcome in trail if kind == "statement"]
    assert [o["tag"] for o in outcomes] == [
        "BEGIN",
        "UPDATE 1",
        "UPDATE 1",
        "UPDATE 1",
        "SELECT 1",
        "UPDATE 0",
        "COMMIT",
    ]
    assert carried == (2 * 5, 0)  # not BEGIN and COMMIT (see the test above)


def test_one_shot_errors_and_notices_are_handed_over(gateway: Gateway) -> None:
    divide = "SELECT 10 / (id - $1::int) FROM patients WHERE id = 3"  # fails as it runs
    noisy = "SELECT noisy($1::int)"

    def script(client: RawClient) -> list[Messages]:
        return [
            one_shot(client, ACCOUNT, [b"1"]),
            one_shot(client, ACCOUNT, [b"not a number"]),  # fails at Bind
            one_shot(client, ACCOUNT, [b"2"]),
            one_shot(client, divide, [b"4"]),
            one_shot(client, divide, [b"3"]),  # fails at Execute
            one_shot(client, divide, [b"5"]),
            one_shot(client, noisy, [b"1"]),
            one_shot(client, noisy, [b"2"]),  # a notice among the answers
            one_shot(client, ACCOUNT, [b"3"]),
        ]

    received, trail, carried = run_twice(gateway, script)
    assert error_of(received[1])["C"] == "22P02"
    assert error_of(received[4])["C"] == "22012"
    assert "N" in kinds(received[7])
    outcomes = [outcome for kind, _, outcome in trail if kind == "statement"]
    assert outcomes[1]["status"] == "not-run"
    assert outcomes[4]["status"] == "failed" and outcomes[4]["sqlstate"] == "22012"
    assert [o["status"] for i, o in enumerate(outcomes) if i not in (1, 4)] == ["completed"] * 7
    assert carried.decided >= 3


def test_pipelined_one_shots_in_one_write_and_in_two(gateway: Gateway) -> None:
    def shot(value: bytes) -> bytes:
        messages = (wire.parse(b"", ACCOUNT), bind(b"", b"", [value]), describe_portal())
        return b"".join([*messages, execute(), wire.sync()])

    def script(client: RawClient) -> list[Messages]:
        got = [one_shot(client, ACCOUNT, [b"1"])]
        client.send(shot(b"2"))
        client.send(shot(b"3"))
        got += [client.until("Z"), client.until("Z")]
        client.send(shot(b"4") + shot(b"5"))
        got += [client.until("Z"), client.until("Z")]
        return got

    received, trail, _ = run_twice(gateway, script)
    assert [kinds(m) for m in received] == ["12TDCZ"] * 5
    outcomes = [outcome for kind, _, outcome in trail if kind == "statement"]
    assert [o["status"] for o in outcomes] == ["completed"] * 5


def test_shapes_that_are_not_the_lanes_are_the_relays(gateway: Gateway) -> None:
    """Near misses of the one-shot shape, each after the text is cached: a row limit
    (PortalSuspended), a statement Describe, a Flush among them, two Syncs."""

    def script(client: RawClient) -> list[Messages]:
        got = [one_shot(client, ACCOUNT, [b"1"])]
        parse, bound = wire.parse(b"", ACCOUNT), bind(b"", b"", [b"2"])
        statement_describe = wire.message(wire.DESCRIBE, b"S\x00")
        for messages in (
            [parse, bound, execute(max_rows=1), wire.sync()],
            [parse, statement_describe, bound, execute(), wire.sync()],
            [parse, bound, wire.message(wire.FLUSH, b""), execute(), wire.sync()],
            [parse, bound, execute(), wire.sync(), wire.sync()],
        ):
            client.send(*messages)
            got.append(client.until("Z"))
            if messages[-1] == messages[-2]:
                got.append(client.until("Z"))
        got.append(one_shot(client, ACCOUNT, [b"3"]))  # the lane's again
        return got

    received, trail, carried = run_twice(gateway, script)
    assert kinds(received[1]) == "12DsZ"
    assert carried == (2 * 2, 1)  # the first and the last one-shot; the near misses not
    assert len([1 for kind, _, _ in trail if kind == "statement"]) == 6


def test_the_unnamed_statement_the_lane_leaves_is_the_relays(gateway: Gateway) -> None:
    """After the lane's one-shots, a Bind and Execute of the unnamed statement (no
    Parse) and named statements are the Python relay's: it must know what the
    unnamed statement is."""

    other = "SELECT id FROM patients WHERE mrn = $1"

    def script(client: RawClient) -> list[Messages]:
        got = [one_shot(client, ACCOUNT, [str(i).encode()]) for i in range(1, 4)]
        got.append(one_shot(client, other, [b"M1"]))  # the relay's unnamed statement
        got.append(one_shot(client, ACCOUNT, [b"8"]))  # the lane's
        client.send(bind(b"", b"", [b"9"]), execute(), wire.sync())  # ACCOUNT's, with 9
        got.append(client.until("Z"))
        got.append(one_shot(client, ACCOUNT, [b"4"], statement=b"named"))
        client.send(bind(b"", b"named", [b"5"]), execute(), wire.sync())
        got.append(client.until("Z"))
        got.append(one_shot(client, ACCOUNT, [b"6"]))
        client.send(wire.query("SELECT 1"))
        got.append(client.until("Z"))
        client.send(bind(b"", b"", [b"7"]), execute(), wire.sync())  # gone after a Query
        got.append(client.until("Z"))
        return got

    received, trail, carried = run_twice(gateway, script)
    assert kinds(received[5]) == "2DCZ"
    assert error_of(received[-1])["C"] == "26000"
    texts = [data["text"] for kind, data, _ in trail if kind == "statement"]
    assert texts[4:6] == [ACCOUNT, ACCOUNT]  # the Bind-only run is recorded as ACCOUNT
    assert texts.count(ACCOUNT) == 9  # the last is recorded, then the server refuses it
    assert carried.decided >= 3


def test_one_shot_when_the_journal_fails_or_the_client_goes(gateway: Gateway) -> None:
    def script(client: RawClient) -> list[Messages]:
        got = [one_shot(client, ACCOUNT, [b"1"])]
        got += settled_query(gateway, client, "SELECT 1")
        journal = service_of(gateway).store._journal  # type: ignore[attr-defined]
        real, broken = journal.fd, os.open(os.devnull, os.O_RDONLY)
        journal.fd = broken
        try:
            got.append(one_shot(client, ACCOUNT, [b"2"]))
        finally:
            journal.fd = real
            os.close(broken)
        got += settled_query(gateway, client, "SELECT 1, 2")  # not the lane's: a new mask
        leave_while_held(
            gateway,
            client,
            wire.parse(b"", ACCOUNT),
            bind(b"", b"", [b"3"]),
            execute(),
            wire.sync(),
        )
        return got

    received, trail, carried = run_twice(gateway, script)
    assert error_of(received[2])["C"] == "58000"
    statements = [(data["text"], outcome) for kind, data, outcome in trail if kind == "statement"]
    assert [text for text, _ in statements] == [ACCOUNT, "SELECT 1", "SELECT 1, 2", ACCOUNT]
    assert statements[-1][1]["status"] == "not-run"
    # Decided by the lane: the one-shot whose entry could not be written, and the last
    # (held). Entries: the first one-shot, SELECT 1 and SELECT 1, 2 (carried) and the
    # last one's statement.
    assert carried == (2 + 2 + 2 + 1, 2)


def test_the_lane_over_tls(scratch_db_url: str, tmp_path: Path, monkeypatch: Any) -> None:
    """psycopg over TLS (its queries with parameters are one-shots): the lane decides
    them from its cache and writes through the TLS transport."""
    tls = make_certificate(tmp_path)
    with running_gateway(scratch_db_url, tmp_path, monkeypatch, tls=tls) as gateway:
        queue = service_of(gateway).writer.lane_queue
        session = gateway.session()
        # (prepare_threshold None: psycopg would prepare the query as a named statement
        # from its sixth run, and those are the relay's)
        with gateway.connect(session, sslmode="require", prepare_threshold=None) as conn:
            assert conn.info.pgconn.ssl_in_use
            time.sleep(0.1)  # the relay and its lane take over just after the startup
            before = queue.decided
            found = [
                conn.execute("SELECT mrn FROM patients WHERE id = %s", (i,)).fetchone()
                for i in range(1, 7)
            ]
            decided = queue.decided - before
        wait_closed(gateway, session["session_id"])
        trail = records(gateway, session["session_id"])
    assert found == [(f"M{i}",) for i in range(1, 7)]
    assert decided == 5  # all but the first, which Python decides
    outcomes = [outcome for kind, _, outcome in trail if kind == "statement"]
    assert [o["status"] for o in outcomes][-6:] == ["completed"] * 6


# -- the lane's outcome data ---------------------------------------------------------------


@pytest.mark.parametrize("tag", ["SELECT 1", "SELECT 0", "SELECT 123456789", "SHOW", "INSERT 0 3"])
@pytest.mark.parametrize("us", [0, 1, 10, 999, 1000, 1001, 12340, 1234567, 86_400_000_000])
def test_outcome_data_is_what_python_writes(tag: str, us: int) -> None:
    assert native is not None
    expected = outcome_data_json(
        Outcome(tag=tag, rows=wire.rows_from_tag(tag), duration_ms=us / 1000, status="completed")
    )
    assert native.outcome_data(tag, us) == expected
