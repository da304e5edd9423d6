"""The gateway state store (SQLite and PostgreSQL) and the audit chain built on it."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from audit_journal import delete_entries, edit_entry, journal_path

from runner.audit.entries import event_entry, outcome_entry
from runner.audit.records import merge_records
from runner.audit.verify import verify_chain
from runner.audit.writer import AuditWriter
from runner.gateway.model import (
    AuditEntry,
    EntryKind,
    Grant,
    NewEntry,
    Outcome,
    Principal,
    ScramVerifier,
    Session,
    StateStore,
    entry_hash,
    new_secret,
    new_session_id,
)
from runner.gateway.store import PostgresStore, SqliteStore, StoreError, open_store
from runner.plan.model import canonical_json

REPO_ROOT = Path(__file__).resolve().parents[2]

# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    url = request.getfixturevalue("scratch_db_url")
    assert isinstance(url, str)
    return url


@pytest.fixture
def pg_store_url(scratch_db_url: str) -> str:
    return scratch_db_url


@pytest.fixture
def store(store_url: str) -> Iterator[StateStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def raw_sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    """Run SQL straight on the store's database, behind the store's back."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite://"))
        try:
            rows = conn.execute(statement).fetchall()
            conn.commit()
        finally:
            conn.close()
        return rows
    with psycopg.connect(url, autocommit=True) as pg:
        cur = pg.execute(statement)
        return cur.fetchall() if cur.description else []


NOW = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_session(secret: str, *, database: str = "app") -> Session:
    claims = {
        "iss": "https://token.actions.githubusercontent.com",
        "sub": "repo:acme/app:ref:refs/heads/main",
        "actor": "octocat",
        "repository": "acme/app",
        "ref": "refs/heads/main",
        "sha": "a" * 40,
        "run_id": "12345",
        "workflow_ref": "acme/app/.github/workflows/migrate.yml@refs/heads/main",
        "aud": "signoff",
        "exp": 1_740_000_000,
        "nested": {"list": [1, 2.5, "x"], "ünïcode": "✓"},
    }
    return Session(
        id=new_session_id(),
        verifier=ScramVerifier.create(secret),
        principal=Principal.from_claims(claims),
        database=database,
        role="app_migrator",
        created_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )


def statement(session_id: str, n: int) -> NewEntry:
    return NewEntry(EntryKind.STATEMENT, session_id, {"text": f"select {n}", "n": n})


def outcome(session_id: str, ref: int) -> NewEntry:
    return NewEntry(EntryKind.OUTCOME, session_id, {"outcome": "SELECT 1", "rows": 1}, ref=ref)


def fill_chain(store: StateStore, pairs: int) -> list[AuditEntry]:
    written: list[AuditEntry] = []
    for n in range(pairs):
        [st] = store.append([statement("so_a", n)])
        written.append(st)
        written.extend(store.append([outcome("so_a", st.seq)]))
    return written


# -- sessions ------------------------------------------------------------------------------


def test_session_round_trip(store: StateStore, store_url: str) -> None:
    secret = new_secret()
    session = make_session(secret)
    store.create_session(session)

    got = store.get_session(session.id)
    assert got == session
    assert got.verifier.matches(secret)
    assert not got.verifier.matches(secret + "x")
    assert got.principal.claims["nested"] == {"list": [1, 2.5, "x"], "ünïcode": "✓"}
    assert got.principal.actor == "octocat"
    assert got.created_at.tzinfo is not None and got.created_at == NOW
    assert got.usable(NOW) is None
    assert store.get_session("so_unknown") is None

    # Only the verifier is stored: the secret is nowhere in the database.
    rows = raw_sql(store_url, "SELECT * FROM sessions")
    assert secret not in repr(rows)
    if store_url.startswith("sqlite:"):
        for path in Path(store_url.removeprefix("sqlite://")).parent.iterdir():
            assert secret.encode() not in path.read_bytes()

    with pytest.raises(StoreError, match="already exists") as info:
        store.create_session(session)
    assert secret not in str(info.value)


def test_revoke(store: StateStore) -> None:
    session = make_session(new_secret())
    store.create_session(session)
    at = NOW + timedelta(minutes=5)
    assert store.revoke_session(session.id, at) is True
    assert store.revoke_session(session.id, at + timedelta(minutes=1)) is False
    assert store.revoke_session("so_unknown", at) is False
    got = store.get_session(session.id)
    assert got is not None and got.revoked_at == at
    assert got.usable(NOW + timedelta(minutes=6)) == "session revoked"


# -- token ids -----------------------------------------------------------------------------


def test_jti_remembered_once(store: StateStore, store_url: str) -> None:
    exp = datetime.now(UTC) + timedelta(minutes=10)
    assert store.remember_jti("https://issuer", "jti-1", exp) is True
    assert store.remember_jti("https://issuer", "jti-1", exp) is False
    assert store.remember_jti("https://other", "jti-1", exp) is True
    other = open_store(store_url)  # another gateway process sees the same set
    try:
        assert other.remember_jti("https://issuer", "jti-1", exp) is False
    finally:
        other.close()


def test_expired_jti_purged(store_url: str) -> None:
    first = open_store(store_url)
    try:
        assert first.remember_jti("iss", "old", datetime.now(UTC) - timedelta(hours=1))
    finally:
        first.close()
    assert raw_sql(store_url, "SELECT count(*) FROM seen_jti") == [(1,)]
    second = open_store(store_url)  # a fresh store purges on its first remember_jti
    try:
        assert second.remember_jti("iss", "new", datetime.now(UTC) + timedelta(hours=1))
    finally:
        second.close()
    assert raw_sql(store_url, "SELECT jti FROM seen_jti") == [("new",)]


# -- grants --------------------------------------------------------------------------------


def grant(grant_id: str, *, session_id: str | None = None, fingerprint: str = "fp1") -> Grant:
    return Grant(
        id=grant_id,
        database="app",
        fingerprint=fingerprint,
        approver="reviewer",
        evidence_url="https://github.com/acme/app/pull/1#issuecomment-1",
        created_at=NOW,
        session_id=session_id,
        plan_hash="b" * 64,
    )


def test_grant_consumed_once(store: StateStore) -> None:
    store.add_grant(grant("g1"))
    store.add_grant(grant("g2", session_id="so_other"))
    at = NOW + timedelta(minutes=1)

    assert store.consume_grant("app", "fp-none", "so_mine", at) is None
    assert store.consume_grant("other-db", "fp1", "so_mine", at) is None
    used = store.consume_grant("app", "fp1", "so_mine", at)
    assert used is not None and used.id == "g1"
    assert used.used_at == at and used.used_by_session == "so_mine"
    assert used.evidence_url == grant("g1").evidence_url and used.plan_hash == "b" * 64
    # g2 is bound to another session
    assert store.consume_grant("app", "fp1", "so_mine", at) is None
    bound = store.consume_grant("app", "fp1", "so_other", at)
    assert bound is not None and bound.id == "g2"

    listed = {g.id: g for g in store.list_grants("app")}
    assert set(listed) == {"g1", "g2"}
    assert listed["g1"].used_by_session == "so_mine"
    assert store.list_grants("nothing") == []
    assert len(store.list_grants()) == 2
    with pytest.raises(StoreError, match="grant g1 already exists"):
        store.add_grant(grant("g1"))


def test_session_bound_grant_preferred(store: StateStore) -> None:
    store.add_grant(grant("any"))
    store.add_grant(grant("mine", session_id="so_mine"))
    used = store.consume_grant("app", "fp1", "so_mine", NOW)
    assert used is not None and used.id == "mine"


@pytest.mark.parametrize("grants", [1, 3])
def test_grant_concurrent_consumers(store_url: str, grants: int) -> None:
    setup = open_store(store_url)
    for i in range(grants):
        setup.add_grant(grant(f"g{i}"))
    setup.close()

    threads = 8
    barrier = threading.Barrier(threads)
    results: list[Grant | None] = [None] * threads
    errors: list[BaseException] = []

    def consume(i: int) -> None:
        own = open_store(store_url)  # one store per thread: separate connections
        try:
            barrier.wait()
            results[i] = own.consume_grant("app", "fp1", f"so_{i}", NOW)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    workers = [threading.Thread(target=consume, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    won = [g for g in results if g is not None]
    assert len(won) == grants
    assert len({g.id for g in won}) == grants


# -- the audit chain -----------------------------------------------------------------------


def test_append_entries_verify(store: StateStore) -> None:
    first = store.append(
        [statement("so_a", 0), NewEntry(EntryKind.SESSION, "so_b", {"event": "authenticated"})]
    )
    assert [e.seq for e in first] == [1, 2]
    assert first[0].prev_hash == "0" * 64
    assert first[1].prev_hash == first[0].hash
    assert first[0].ts.endswith("Z") and len(first[0].ts) == len("2025-03-01T12:00:00.123456Z")
    second = store.append([outcome("so_a", 1)])
    assert second[0].seq == 3 and second[0].prev_hash == first[1].hash
    assert store.append([]) == []

    stored = store.entries()
    assert stored == [*first, *second]
    assert [e.seq for e in store.entries(session_id="so_a")] == [1, 3]
    assert [e.seq for e in store.entries(after_seq=1)] == [2, 3]
    assert [e.seq for e in store.entries(session_id="so_a", after_seq=1)] == [3]

    report = verify_chain(stored)
    assert report.ok and report.count == 3 and report.problem is None
    assert report.incomplete == ()
    assert report.last_seq == 3 and report.last_hash == second[0].hash
    # a tail verifies after a trusted entry
    tail = verify_chain(store.entries(after_seq=1), after=(1, first[0].hash))
    assert tail.ok


def test_awkward_data_round_trips(store: StateStore) -> None:
    data = {
        "floats": [0.1, 1e20, -0.0, 1.5e-300, 2.0],
        "big": 2**70,
        "when": datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "tuple": (1, "two"),
        "text": 'naïve ✓ \u2028 "quoted" \\ \x00',
        "kind": EntryKind.GRANT,
        "nested": {"b": 1, "a": [None, True, False]},
    }
    [written] = store.append([NewEntry(EntryKind.GRANT, None, data)])
    assert written.data["when"] == "2025-01-02T03:04:05.000006Z"
    assert written.data["tuple"] == [1, "two"]
    assert written.data["kind"] == "grant"
    [read] = store.entries()
    assert read == written
    assert verify_chain([read]).ok

    with pytest.raises(ValueError, match="not JSON: Out of range float"):
        store.append([NewEntry(EntryKind.GRANT, None, {"x": float("nan")})])
    with pytest.raises(TypeError, match="not JSON"):
        store.append([NewEntry(EntryKind.GRANT, None, {"x": object()})])
    assert len(store.entries()) == 1  # the failed appends wrote nothing


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def test_tampered_data_detected(store: StateStore, store_url: str) -> None:
    fill_chain(store, 5)
    if is_sqlite(store_url):

        def to_delete(fields: dict[str, Any]) -> None:
            fields["data"]["text"] = fields["data"]["text"].replace("select", "delete")

        edit_entry(journal_path(store_url), 5, to_delete)
    else:
        raw_sql(
            store_url, "UPDATE audit SET data = replace(data, 'select', 'delete') WHERE seq = 5"
        )
    report = verify_chain(store.entries())
    assert not report.ok
    assert report.first_bad_seq == 5
    assert report.problem == "entry 5: hash does not match its contents"
    assert report.count == 10


def test_tampered_hash_detected(store: StateStore, store_url: str) -> None:
    written = fill_chain(store, 5)
    original = written[6].hash
    flipped = original[:-1] + ("0" if original[-1] != "0" else "1")
    if is_sqlite(store_url):
        edit_entry(journal_path(store_url), 7, lambda fields: fields.update(hash=flipped))
    else:
        raw_sql(store_url, f"UPDATE audit SET hash = '{flipped}' WHERE seq = 7")
    report = verify_chain(store.entries())
    assert (report.ok, report.first_bad_seq) == (False, 7)
    assert report.problem == "entry 7: hash does not match its contents"


def test_rehashed_entry_breaks_the_link(store: StateStore, store_url: str) -> None:
    fill_chain(store, 5)
    [target] = store.entries(after_seq=2)[:1]
    forged_data = {**target.data, "text": "drop table users"}
    forged = AuditEntry(
        target.seq, target.ts, target.kind, target.session_id, forged_data,
        target.prev_hash, "", target.ref,
    )  # fmt: skip
    new_hash = entry_hash(forged.prev_hash, forged.body())
    if is_sqlite(store_url):
        edit_entry(
            journal_path(store_url),
            3,
            lambda fields: fields.update(data=forged_data, hash=new_hash),
        )
    else:
        text = canonical_json(forged_data).replace("'", "''")
        raw_sql(store_url, f"UPDATE audit SET data = '{text}', hash = '{new_hash}' WHERE seq = 3")
    report = verify_chain(store.entries())
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert report.problem == "entry 4: prev_hash does not link to entry 3"


def test_deleted_row_is_a_gap(store: StateStore, store_url: str) -> None:
    fill_chain(store, 5)
    if is_sqlite(store_url):
        delete_entries(journal_path(store_url), 7)
    else:
        raw_sql(store_url, "DELETE FROM audit WHERE seq = 7")
    report = verify_chain(store.entries())
    assert (report.ok, report.first_bad_seq) == (False, 7)
    assert report.problem == "seq 7 missing (gap after 6)"

    if is_sqlite(store_url):
        delete_entries(journal_path(store_url), 1, 2)
    else:
        raw_sql(store_url, "DELETE FROM audit WHERE seq IN (1, 2)")
    report = verify_chain(store.entries())
    assert report.problem == "seqs 1-2 missing (gap after 0)"


def test_statement_without_outcome_is_incomplete(store: StateStore) -> None:
    store.append([statement("so_a", 0), statement("so_a", 1)])
    store.append([outcome("so_a", 1)])
    store.append([statement("so_a", 2)])
    report = verify_chain(store.entries())
    assert report.ok
    assert report.incomplete == (2, 4)


def test_outcome_for_no_statement_is_a_problem(store: StateStore) -> None:
    store.append([NewEntry(EntryKind.SESSION, "so_a", {"event": "authenticated"})])
    store.append([outcome("so_a", 1)])
    report = verify_chain(store.entries())
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert report.problem == "entry 2: outcome refers to entry 1, which is not an earlier statement"


def test_schema_version(store_url: str) -> None:
    open_store(store_url).close()
    again = open_store(store_url)  # idempotent
    again.close()
    # SQLite schema 2 moved the audit chain into the journal; PostgreSQL keeps its table.
    versions = [(1,), (2,)] if is_sqlite(store_url) else [(1,)]
    assert raw_sql(store_url, "SELECT version FROM schema_version ORDER BY version") == versions
    raw_sql(store_url, "UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema is version 99, newer"):
        open_store(store_url)


def test_open_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="must start with sqlite:/// or postgresql://, not mysql:"):
        open_store("mysql://u:hunter2@db/x")
    with pytest.raises(StoreError, match="cannot connect") as info:
        open_store("postgresql://someone:hunter2@127.0.0.1:1/nothing?connect_timeout=2")
    assert "hunter2" not in str(info.value)
    with pytest.raises(StoreError, match="absolute path"):
        open_store("sqlite:///")
    with pytest.raises(StoreError, match="unknown sqlite state store option"):
        open_store(f"sqlite:///{tmp_path}/x.db?cache=shared")
    with pytest.raises(StoreError, match="cannot open the state store file"):
        open_store(f"sqlite:///{tmp_path}/missing/dir/x.db")
    memory = open_store("sqlite:///:memory:")
    try:
        assert memory.append([statement("so_a", 0)])[0].seq == 1
        assert verify_chain(memory.entries()).ok
    finally:
        memory.close()
    full = open_store(f"sqlite:///{tmp_path}/full.db?synchronous=FULL&busy_timeout=100")
    full.close()


# -- several gateway processes -------------------------------------------------------------

_APPENDER = """
import sys
from runner.gateway.model import EntryKind, NewEntry
from runner.gateway.store import open_store

store = open_store(sys.argv[1])
name = sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
for i in range(200):
    store.append([NewEntry(EntryKind.SESSION, name, {"i": i})])
store.close()
print("done", flush=True)
"""


def test_two_processes_share_one_chain(store_url: str) -> None:
    open_store(store_url).close()  # schema exists before both start
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, store_url, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for name in ("so_p1", "so_p2")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:  # start both at once
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0 and out.strip() == "done"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    reader = open_store(store_url)
    try:
        entries = reader.entries()
    finally:
        reader.close()
    assert [e.seq for e in entries] == list(range(1, 401))
    report = verify_chain(entries)
    assert report.ok, report.problem
    for name in ("so_p1", "so_p2"):
        assert [e.data["i"] for e in entries if e.session_id == name] == list(range(200))
    if store_url.startswith("postgresql"):
        switches = sum(1 for a, b in itertools.pairwise(entries) if a.session_id != b.session_id)
        assert switches > 1, "the two processes did not append concurrently"


# -- the group-commit writer ---------------------------------------------------------------


class CountingSqlite(SqliteStore):
    calls = 0

    def append_seqs(self, entries: Sequence[NewEntry]) -> list[int]:  # the writer's append
        self.calls += 1
        return super().append_seqs(entries)


class CountingPostgres(PostgresStore):
    calls = 0

    def append_seqs(self, entries: Sequence[NewEntry]) -> list[int]:  # the writer's append
        self.calls += 1
        return super().append_seqs(entries)


def counting_store(url: str) -> CountingSqlite | CountingPostgres:
    if url.startswith("sqlite:"):
        return CountingSqlite(url.removeprefix("sqlite://"))
    return CountingPostgres(url)


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_audit_writer_concurrent_appenders(store_url: str, inline: bool) -> None:
    store = counting_store(store_url)
    writer = AuditWriter(store, inline=inline)
    tasks, rounds = 50, 6

    async def appender(t: int) -> list[int]:
        mine: list[int] = []
        for r in range(rounds):
            [st] = await writer.append([statement(f"so_{t}", r)])
            mine.append(st)
            mine.extend(await writer.append([outcome(f"so_{t}", st)]))
        return mine

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(appender(t) for t in range(tasks)))

    try:
        results = asyncio.run(main())
    finally:
        writer.close()
    requests = tasks * rounds * 2
    assert writer.stats.requests == requests
    assert writer.stats.entries == requests
    assert store.calls == writer.stats.batches
    assert store.calls < requests / 2, f"{store.calls} store appends for {requests} requests"

    entries = store.entries()
    store.close()
    assert len(entries) == requests
    report = verify_chain(entries)
    assert report.ok and report.incomplete == ()
    for t, mine in enumerate(results):
        assert mine == sorted(mine)
        stored = [e for e in entries if e.session_id == f"so_{t}"]
        assert [e.seq for e in stored] == mine
        assert [e.ref for e in stored if e.kind is EntryKind.OUTCOME] == mine[::2]
        assert [e.data["n"] for e in stored if e.kind is EntryKind.STATEMENT] == list(range(rounds))


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_audit_writer_errors_and_close(store: StateStore, inline: bool) -> None:
    writer = AuditWriter(store, inline=inline)

    async def main() -> tuple[list[int] | BaseException, ...]:
        return await asyncio.gather(
            writer.append([statement("so_a", 0)]),
            writer.append([NewEntry(EntryKind.SESSION, "so_b", {"bad": object()})]),
            writer.append([statement("so_c", 1)]),
            return_exceptions=True,
        )

    good_a, bad, good_c = asyncio.run(main())
    assert isinstance(bad, TypeError)
    assert isinstance(good_a, list) and isinstance(good_c, list)
    assert len(good_a) == len(good_c) == 1
    [now] = writer.append_now([event_entry("so_a", "closed", reason="client quit")])
    assert store.entries(after_seq=now - 1)[0].data == {"event": "closed", "reason": "client quit"}
    assert writer.append_now([]) == []
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.append_now([statement("so_a", 2)])
    assert verify_chain(store.entries()).ok


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_audit_writer_failure_reaches_every_caller(tmp_path: Path, inline: bool) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    writer = AuditWriter(store, inline=inline)
    store.close()  # every write now fails

    async def main() -> list[list[int] | BaseException]:
        return await asyncio.gather(
            *(writer.append([statement("so_a", n)]) for n in range(5)), return_exceptions=True
        )

    results = asyncio.run(main())
    writer.close()
    assert all(isinstance(r, StoreError) for r in results)


# -- the records view ----------------------------------------------------------------------


def test_merge_records(store: StateStore) -> None:
    [ev] = store.append([event_entry("so_a", "authenticated")])
    [s1, s2, s3] = store.append([statement("so_a", 1), statement("so_a", 2), statement("so_a", 3)])
    store.append(
        [
            outcome_entry("so_a", s1.seq, Outcome(tag="DELETE 3", rows=3, duration_ms=1.23456)),
            outcome_entry(
                "so_a", s2.seq, Outcome(sqlstate="42P01", status="failed", duration_ms=0.5)
            ),
        ]
    )
    records = merge_records(store.entries(session_id="so_a"))
    assert [r["seq"] for r in records] == [ev.seq, s1.seq, s2.seq, s3.seq]
    assert records[0]["kind"] == "session" and records[0]["event"] == "authenticated"
    first, second, third = records[1:]
    assert first["text"] == "select 1" and first["outcome"] == "DELETE 3"
    assert (first["rows"], first["duration_ms"], first["status"]) == (3, 1.235, "completed")
    assert first["hash"] == s1.hash and first["prev_hash"] == s1.prev_hash
    assert second["outcome"] == "42P01" and second["status"] == "failed"
    assert third["status"] == "incomplete" and third["outcome"] is None


def test_chained_hash_equals_the_contract_over_odd_data() -> None:
    """The store writes each body's canonical JSON by hand (one encoding per entry):
    it must be exactly entry_hash(prev_hash, body()) as DESIGN.md defines it."""
    from runner.audit.chain import build_entries
    from runner.gateway.model import GENESIS_HASH, EntryKind, NewEntry, entry_hash

    entries = [
        NewEntry(
            EntryKind.STATEMENT, 'so_"quoted"\\x', {"text": 'DROP TABLE "é"', "n": [1, 2.5, None]}
        ),
        NewEntry(EntryKind.OUTCOME, None, {"z": {"b": 1, "a": True}, "ünï": "✓\n"}, ref=1),
        NewEntry(EntryKind.SESSION, "so_1", {}),
    ]
    prev = GENESIS_HASH
    for entry, _ in build_entries(entries, 0, GENESIS_HASH, ts="2026-01-01T00:00:00.000000Z"):
        assert entry.prev_hash == prev
        assert entry.hash == entry_hash(prev, entry.body())
        prev = entry.hash


def test_append_timestamp_is_the_fixed_width_rfc3339_form() -> None:
    """The append path stamps entries without strftime: same text, same width."""
    from datetime import UTC, datetime

    from runner.audit.chain import now_rfc3339, parse_rfc3339, rfc3339

    before = datetime.now(UTC)
    stamp = now_rfc3339()
    after = datetime.now(UTC)
    assert len(stamp) == len(rfc3339(before)) == 27 and stamp.endswith("Z")
    assert rfc3339(before) <= stamp <= rfc3339(after)
    assert rfc3339(parse_rfc3339(stamp)) == stamp


def test_canonical_data_is_json_dumps_sorted_compact() -> None:
    """canonical_data reuses one encoder: its text is json.dumps's, byte for byte."""
    import json

    from runner.audit.chain import canonical_data

    data = {"z": [1, 2.5, None, True], "a": {"y": "é\n", "b": "✓"}, "m": ("t", 1)}
    text, plain = canonical_data(data)
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert plain == json.loads(text)
    with pytest.raises(ValueError):
        canonical_data({"x": float("nan")})
    with pytest.raises(TypeError):
        canonical_data({"x": object()})


def test_inline_writer_commits_a_statement_and_an_outcome_started_alongside_once(
    tmp_path: Path,
) -> None:
    """The proxy starts the outcome write as a task, then awaits the statement
    write: both land in one commit (one batch), in a verifying chain."""
    import asyncio

    from runner.audit.writer import AuditWriter
    from runner.gateway.model import EntryKind, NewEntry
    from runner.gateway.store import SqliteStore

    store = SqliteStore(str(tmp_path / "state.db"))
    writer = AuditWriter(store, inline=True)

    async def scenario() -> None:
        (first,) = await writer.append([NewEntry(EntryKind.STATEMENT, "so_1", {"n": 1})])
        assert writer.stats.batches == 1
        loop = asyncio.get_running_loop()
        # Another connection's statement is appended first in this loop iteration ...
        other = loop.create_task(writer.append([NewEntry(EntryKind.STATEMENT, "so_2", {})]))
        await asyncio.sleep(0)
        # ... then this one starts its outcome write and awaits its next statement's.
        outcome = loop.create_task(
            writer.append([NewEntry(EntryKind.OUTCOME, "so_1", {"ok": True}, ref=first)])
        )
        (second,) = await writer.append([NewEntry(EntryKind.STATEMENT, "so_1", {"n": 2})])
        (done,) = await outcome
        await other
        assert writer.stats.batches == 2 and writer.stats.entries == 4  # one commit for 3
        by_seq = {entry.seq: entry for entry in store.entries()}
        assert by_seq[done].ref == first and done > first and second > first

    try:
        asyncio.run(scenario())
        assert verify_chain(store.entries()).ok
    finally:
        writer.close()
        store.close()


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_append_seqs_writes_the_same_chain(store_url: str, inline: bool) -> None:
    """The writer's appends (store.append_seqs: the proxy's statements and outcomes)
    chain exactly like store.append(), alone or several in one batch."""
    import asyncio

    store = open_store(store_url)
    writer = AuditWriter(store, inline=inline)

    async def scenario() -> None:
        seqs = await writer.append(
            [statement("so_a", 0), NewEntry(EntryKind.OUTCOME, "so_a", {"x": 1}, ref=1)]
        )
        assert seqs == [1, 2]
        mixed = await asyncio.gather(
            writer.append([statement("so_b", 1)]),
            writer.append([statement("so_c", 2)]),
            writer.append([NewEntry(EntryKind.SESSION, "so_d", {"bad": object()})]),
            writer.append([]),
            return_exceptions=True,
        )
        assert isinstance(mixed[2], TypeError) and mixed[3] == []
        (b_seq,), (c_seq,) = mixed[0], mixed[1]  # type: ignore[misc]
        assert isinstance(b_seq, int) and isinstance(c_seq, int)
        assert {b_seq, c_seq} == {3, 4}
        assert store.append([statement("so_e", 3)])[0].seq == 5

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    entries = store.entries()
    report = verify_chain(entries)
    assert report.ok and report.count == 5, report.problem
    assert [e.data for e in entries][:2] == [statement("so_a", 0).data, {"x": 1}]
    store.close()


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_outcomes_whose_write_failed_go_with_the_next_write(tmp_path: Path, inline: bool) -> None:
    """An outcome nobody waits for is not lost to a write that fails (a full disk,
    here a descriptor that cannot be written): it goes with the next one. A statement
    entry someone waits for fails at once (its statement is refused)."""
    import asyncio

    store = SqliteStore(str(tmp_path / "state.db"))
    writer = AuditWriter(store, inline=inline)
    refused: list[list[int] | None] = []

    async def scenario() -> None:
        assert await writer.append([statement("so_a", 0)]) == [1]
        journal = store._journal
        assert journal is not None
        real, broken = journal.fd, os.open(os.devnull, os.O_RDONLY)
        journal.fd = broken
        try:
            writer.submit([outcome("so_a", 1)])
            writer.submit([statement("so_a", 9)], refused.append)
            for _ in range(50):  # the inline writer: two loop turns; the thread: a moment
                await asyncio.sleep(0.01)
                if refused:
                    break
        finally:
            journal.fd = real
            os.close(broken)
        assert await writer.append([statement("so_a", 2)]) == [3]

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    entries = store.entries()
    store.close()
    assert refused == [None]
    assert [(e.kind, e.ref) for e in entries] == [
        (EntryKind.STATEMENT, None),
        (EntryKind.OUTCOME, 1),
        (EntryKind.STATEMENT, None),
    ]
    assert verify_chain(entries).ok


# -- the SQLite store's audit journal ------------------------------------------------------


def test_journal_lines_are_the_entries_as_json(tmp_path: Path) -> None:
    """One line per entry beside the state file: the canonical body, then its hash."""
    store = SqliteStore(str(tmp_path / "state.db"))
    try:
        written = store.append(
            [statement('so_"a"', 0), NewEntry(EntryKind.SESSION, None, {"é": ["✓", 1.5]})]
        )
        written += store.append([outcome('so_"a"', 1)])
        assert store.journal_path == str(tmp_path / "state.db.audit.jsonl")
    finally:
        store.close()
    raw = (tmp_path / "state.db.audit.jsonl").read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 3
    lines = raw.decode("utf-8").splitlines()
    for entry, line in zip(written, lines, strict=True):
        fields = json.loads(line)
        assert list(fields) == [*sorted(entry.body()), "hash"]
        assert fields == entry.to_json()
        assert line == canonical_json(entry.body())[:-1] + f',"hash":"{entry.hash}"}}'
    with closing(sqlite3.connect(tmp_path / "state.db")) as db:  # not in SQLite any more
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'audit'").fetchall() == []


def test_two_stores_on_one_journal_make_one_chain(tmp_path: Path) -> None:
    """Two SqliteStore objects on one file (two processes' views, each with its own
    descriptor and flock) appending in turn and at once: one contiguous chain."""
    path = str(tmp_path / "state.db")
    a, b = SqliteStore(path), SqliteStore(path)
    try:
        assert [e.seq for e in a.append([statement("so_a", 0)])] == [1]
        assert b.append_seqs([statement("so_b", 0), statement("so_b", 1)]) == [2, 3]
        [a_next] = a.append([outcome("so_a", 1)])  # a learns b's entries from the file
        assert a_next.seq == 4 and a_next.prev_hash == b.entries()[2].hash
        assert b.append_seqs([outcome("so_b", 2)]) == [5]

        def hammer(store: SqliteStore, name: str) -> None:
            for n in range(100):
                store.append_seqs([statement(name, n), event_entry(name, "tick")])

        threads = [
            threading.Thread(target=hammer, args=(store, name))
            for store, name in ((a, "so_ta"), (b, "so_tb"), (a, "so_tc"), (b, "so_td"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        entries = a.entries()
    finally:
        a.close()
        b.close()
    assert [e.seq for e in entries] == list(range(1, 5 + 800 + 1))
    report = verify_chain(entries)
    assert report.ok, report.problem
    assert [e.data["n"] for e in entries if e.session_id == "so_tb" and "n" in e.data] == list(
        range(100)
    )


def test_torn_tail_is_cut_off_by_the_next_append(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer that died mid-write leaves a line with no newline: it was never
    acknowledged, so readers skip it and the next appender cuts it off."""
    path = str(tmp_path / "state.db")
    journal = journal_path(path)
    store = SqliteStore(path)
    try:
        fill_chain(store, 2)
        whole = journal.read_bytes()
        torn = whole.splitlines(keepends=True)[-1][:37]  # an unfinished next entry
        with journal.open("ab") as handle:
            handle.write(torn)
        assert [e.seq for e in store.entries()] == [1, 2, 3, 4]  # complete lines only
        other = SqliteStore(path)  # another process: it cuts the tail off, then appends
        try:
            with caplog.at_level(logging.WARNING, logger="runner.gateway.store"):
                [fifth] = other.append([statement("so_b", 9)])
        finally:
            other.close()
        assert fifth.seq == 5
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [
            f"audit journal {journal}: cut off 37 bytes of an entry a writer never finished"
        ]
        assert journal.read_bytes().startswith(whole)
        assert journal.read_bytes().endswith(b"\n")

        # This process's own write failing part-way (the file size limit stands in
        # for a full disk): the caller gets an error; the next append cuts the
        # unfinished line and keeps the complete one (a statement that never ran).
        size = journal.stat().st_size
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not death
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 400, hard))
        try:
            with pytest.raises(StoreError, match=r"cannot append to the audit journal .*large"):
                store.append_seqs(
                    [statement("so_b", 10), NewEntry(EntryKind.SESSION, "so_b", {"pad": "x" * 500})]
                )
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)
        assert journal.stat().st_size == size + 400
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="runner.gateway.store"):
            assert store.append_seqs([outcome("so_b", 5)]) == [7]  # after the complete one
        assert f"audit journal {journal}: cut off " in caplog.text
        entries = store.entries()
    finally:
        store.close()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6, 7]
    assert entries[5].data == {"text": "select 10", "n": 10}
    report = verify_chain(entries)
    assert report.ok and report.incomplete == (6,)


def test_unreadable_journal_line_names_the_line(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    journal = journal_path(path)
    store = SqliteStore(path)
    try:
        fill_chain(store, 3)
        good = journal.read_bytes()
        lines = good.splitlines()

        def broken(n: int, line: bytes) -> str:
            journal.write_bytes(b"".join(x + b"\n" for x in [*lines[: n - 1], line, *lines[n:]]))
            with pytest.raises(StoreError) as info:
                store.entries()
            message = str(info.value)
            assert "\n" not in message
            return message

        name = f"audit journal {journal} line 3 is not a valid audit entry"
        assert broken(3, lines[2][1:]) == (
            f"{name}: not JSON (Extra data at byte 7); the journal was modified"
        )
        assert broken(3, lines[2].replace(b'"kind"', b'"kinda"')).startswith(
            f"{name}: missing kind; unknown field kinda;"
        )
        assert "seq is not an integer" in broken(3, lines[2].replace(b'"seq":3', b'"seq":"3"'))
        assert "kind 'sql' is not" in broken(
            3, lines[2].replace(b'"kind":"statement"', b'"kind":"sql"')
        )
        assert "kind [1] is not an entry kind" in broken(
            3, lines[2].replace(b'"kind":"statement"', b'"kind":[1]')
        )
        assert "byte 2 is not UTF-8" in broken(3, b"{\xff}")
        assert "line 5" in broken(5, b"")
        # The session view skips other sessions' lines unparsed, never its own.
        journal.write_bytes(good.replace(lines[0], lines[0][:-1]))
        assert store.entries(session_id="so_other") == []
        with pytest.raises(StoreError, match="line 1 is not a valid audit entry"):
            store.entries(session_id="so_a")
        # An unreadable last line stops appends: the chain cannot be extended blindly.
        journal.write_bytes(good[:-2] + b"\n")
        with pytest.raises(StoreError, match="last line is not a valid audit entry"):
            store.append([statement("so_a", 9)])
    finally:
        store.close()


def test_audit_verify_reports_an_edited_journal_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from runner.cli import main

    state = tmp_path / "state.db"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[gateway]
audience = "signoff-gateway"
state_url = "sqlite://{state}"

[[issuers]]
name = "ci"
issuer = "https://token.actions.githubusercontent.com"

[[databases]]
name = "ehr"
host = "127.0.0.1"
dbname = "ehr"
user = "gw"

[[access]]
database = "ehr"
role = "deployer"
issuer = "ci"
claims = {{ repository = "acme/ehr-api" }}

[roles.deployer]
locking = "allow"
"""
    )
    store = SqliteStore(str(state))
    fill_chain(store, 5)
    store.close()

    def verify() -> tuple[int, str]:
        result = CliRunner().invoke(main, ["gateway", "audit", "verify", "--config", str(config)])
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return result.exit_code, result.output

    assert verify() == (0, "audit chain ok: 10 entries\n")
    journal = journal_path(state)
    good = journal.read_bytes()
    at = good.index(b'"seq":4') - 1  # the comma before seq 4's key: no longer JSON
    journal.write_bytes(good[:at] + b";" + good[at + 1 :])
    status, output = verify()
    line_start = sum(len(line) + 1 for line in good.splitlines()[:3])
    assert status == 1
    assert output == (
        f"audit chain BROKEN: audit journal {journal} line 4 is not a valid audit entry: "
        f"not JSON (Expecting ',' delimiter at byte {at - line_start + 1}); "
        "the journal was modified\n"
    )
    at = good.index(b"select 2")  # a byte of the data: still JSON, the hash catches it
    journal.write_bytes(good[:at] + b"S" + good[at + 1 :])
    assert verify() == (1, "audit chain BROKEN: entry 5: hash does not match its contents\n")


# A schema-1 store, by hand: the chain lived in the ``audit`` table.
_V1_DDL = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) VALUES (1);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY, salt BLOB NOT NULL, iterations INTEGER NOT NULL,
    stored_key BLOB NOT NULL, server_key BLOB NOT NULL, principal TEXT NOT NULL,
    claims TEXT NOT NULL, database TEXT NOT NULL, role TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT
);
CREATE TABLE seen_jti (
    issuer TEXT NOT NULL, jti TEXT NOT NULL, expires_at TEXT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX seen_jti_expires ON seen_jti (expires_at);
CREATE TABLE grants (
    id TEXT PRIMARY KEY, database TEXT NOT NULL, fingerprint TEXT NOT NULL,
    approver TEXT NOT NULL, evidence_url TEXT, session_id TEXT, plan_hash TEXT,
    created_at TEXT NOT NULL, used_at TEXT, used_by_session TEXT
);
CREATE INDEX grants_unused ON grants (database, fingerprint) WHERE used_at IS NULL;
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, kind TEXT NOT NULL, session_id TEXT,
    ref INTEGER, data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX audit_session ON audit (session_id, seq);
"""


def schema_1_store(path: Path, pairs: int) -> list[AuditEntry]:
    """A schema-1 state file whose audit table holds ``pairs`` statements with outcomes."""
    from runner.audit.chain import build_entries
    from runner.gateway.model import GENESIS_HASH

    news = [
        new for n in range(pairs) for new in (statement("so_old", n), outcome("so_old", 2 * n + 1))
    ]
    built = build_entries(news, 0, GENESIS_HASH, ts="2025-01-01T00:00:00.000000Z")
    with closing(sqlite3.connect(path)) as db:
        db.executescript(_V1_DDL)
        db.executemany(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (e.seq, e.ts, e.kind.value, e.session_id, e.ref, text, e.prev_hash, e.hash)
                for e, text in built
            ],
        )
        db.execute(
            "INSERT INTO grants (id, database, fingerprint, approver, created_at) "
            "VALUES ('g-old', 'app', 'fp1', 'bob', '2025-01-01T00:00:00.000000Z')"
        )
        db.commit()
    return [e for e, _ in built]


def test_schema_1_audit_table_moves_into_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = schema_1_store(path, 3)
    store = SqliteStore(str(path))
    try:
        assert store.entries() == old
        assert [g.id for g in store.list_grants()] == ["g-old"]  # the rest stays as it was
        [new] = store.append([statement("so_new", 0)])
        assert (new.seq, new.prev_hash) == (7, old[-1].hash)
        assert verify_chain(store.entries()).ok
    finally:
        store.close()
    url = f"sqlite://{path}"
    assert raw_sql(url, "SELECT name FROM sqlite_master WHERE name = 'audit'") == []
    assert raw_sql(url, "SELECT version FROM schema_version ORDER BY version") == [(1,), (2,)]
    again = SqliteStore(str(path))  # once: nothing is copied again
    try:
        assert [e.seq for e in again.entries()] == list(range(1, 8))
    finally:
        again.close()


def test_schema_1_move_completes_an_interrupted_copy_and_keeps_tampering(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    old = schema_1_store(path, 3)
    raw_sql(  # altered in the table: stays detectable
        f"sqlite://{path}",
        "UPDATE audit SET data = replace(data, 'select 1', 'select 9') WHERE seq = 3",
    )
    # What a complete move writes, from a copy of the file ...
    (tmp_path / "copy").mkdir()
    shutil.copy(path, tmp_path / "copy" / "state.db")
    SqliteStore(str(tmp_path / "copy" / "state.db")).close()
    complete = journal_path(tmp_path / "copy" / "state.db").read_bytes()
    # ... and a move that stopped mid-way: its transaction (the drop) never committed.
    journal = journal_path(path)
    journal.write_bytes(complete[:300])
    store = SqliteStore(str(path))
    try:
        assert journal.read_bytes() == complete
        entries = store.entries()
    finally:
        store.close()
    assert [e.seq for e in entries] == [e.seq for e in old]
    report = verify_chain(entries)
    assert (report.ok, report.first_bad_seq) == (False, 3)


def test_schema_1_move_refuses_a_journal_with_other_entries(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    schema_1_store(path, 2)
    journal = journal_path(path)
    journal.write_bytes(b'{"something":"else"}\n')
    with pytest.raises(StoreError) as info:
        SqliteStore(str(path))
    assert str(info.value) == (
        f"cannot move the audit table of {path} into {journal}: the journal already holds "
        "other entries; move the journal aside and open the store again"
    )
    assert raw_sql(f"sqlite://{path}", "SELECT count(*) FROM audit") == [(4,)]  # unchanged


def test_canonical_json_data_hashes_like_the_same_dict(store: StateStore) -> None:
    """CanonicalJson data is used as the text it is: the same hash as the dict."""
    from runner.audit.chain import build_entries
    from runner.gateway.model import GENESIS_HASH, CanonicalJson

    data = {"text": "SELECT 'é'", "n": [1, 2.5, None], "z": {"b": True, "a": "✓"}}
    text = CanonicalJson(canonical_json(data))
    ts = "2026-01-01T00:00:00.000000Z"
    [(from_dict, _)] = build_entries(
        [NewEntry(EntryKind.STATEMENT, "so_a", data)], 0, GENESIS_HASH, ts=ts
    )
    [(from_text, stored)] = build_entries(
        [NewEntry(EntryKind.STATEMENT, "so_a", text)], 0, GENESIS_HASH, ts=ts
    )
    assert from_text.hash == from_dict.hash and stored == text
    assert from_text.data == data

    [appended] = store.append([NewEntry(EntryKind.STATEMENT, "so_a", text)])
    assert appended.data == data
    assert store.append_seqs([NewEntry(EntryKind.OUTCOME, "so_a", text, ref=1)]) == [2]
    read = store.entries()
    assert all(e.data == data for e in read)
    assert verify_chain(read).ok


def test_both_backends_store_what_chain_rows_makes(tmp_path: Path, pg_store_url: str) -> None:
    """One chain shape: PostgreSQL's ``audit`` rows and the SQLite store's journal
    lines are, byte for byte, what chain_rows makes of the same entries."""
    from runner.audit.chain import ROW_COLUMNS, chain_rows

    news = [event_entry("so_a", "authenticated"), statement("so_a", 0), outcome("so_a", 2)]
    stores: list[SqliteStore | PostgresStore] = [
        PostgresStore(pg_store_url),
        SqliteStore(str(tmp_path / "state.db")),
    ]
    for store in stores:
        try:
            store.append(news[:2])
            store.append_seqs(news[2:])
            written = store.entries()
        finally:
            store.close()
        assert [e.seq for e in written] == [1, 2, 3] and verify_chain(written).ok
        if isinstance(store, PostgresStore):
            rows = raw_sql(pg_store_url, f"SELECT {ROW_COLUMNS} FROM audit ORDER BY seq")
        else:
            lines = journal_path(tmp_path / "state.db").read_bytes().splitlines(keepends=True)
        for n, entry in enumerate(written):
            data = canonical_json(dict(entry.data))
            item = (entry.kind, entry.session_id, entry.ref, data, None)
            made: list[str] = []
            [row] = chain_rows([item], entry.seq - 1, entry.prev_hash, entry.ts, made)
            assert row[7] == entry.hash
            if isinstance(store, PostgresStore):
                assert tuple(rows[n]) == row
            else:
                assert lines[n] == made[0].encode()
