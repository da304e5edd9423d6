"""The gateway's PostgreSQL proxy, driven by real clients against real servers.

Clients: psql (subprocess), psycopg (libpq: simple, extended, pipeline, COPY,
cancel) and a small raw-protocol client where the test is about exact bytes
(authentication flow, SQLSTATEs, what the client receives). Upstreams: the
server of ``pg_url`` (trust on loopback) and a throwaway cluster started from
the machine's PostgreSQL binaries with scram-sha-256 / md5 / password / hostssl
``pg_hba`` lines, so the upstream side authenticates for real.

The backend is ``AuditBackend`` below: a real ProxyBackend with sessions in a
dict, decisions from ``runner.plan.build.lint_text`` (blocked when a finding
needs approval and no grant covers it, or when the text matches a deny word)
and the audit log as a list.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import psycopg
import pytest
from certificates import make_certificate
from pgclient import RawClient, auth_codes, bind, describe_portal, error_of, execute
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict

from runner.dryrun.scratch import scratch_database
from runner.gateway import upstream as upstream_mod
from runner.gateway import wire
from runner.gateway.model import (
    AuditDecision,
    Grant,
    Outcome,
    Principal,
    ScramVerifier,
    Session,
    StatementDecision,
    Upstream,
    new_secret,
    new_session_id,
    utcnow,
)
from runner.gateway.proxy import PgProxy, ProxyConfig
from runner.plan.build import lint_text

T = TypeVar("T")
PSQL = shutil.which("psql")
UPSTREAM_PASSWORD = "up-" + secrets.token_urlsafe(18)  # must never reach a client


# -- the backend -------------------------------------------------------------------------------


class AuditBackend:
    """Sessions in a dict, policy from lint_text plus a deny list, the audit log in a list."""

    def __init__(self, upstream: Upstream, *, deny: Sequence[str] = ("TRUNCATE",)) -> None:
        self.default_upstream = upstream
        self.upstreams: dict[str, Upstream] = {}
        self.sessions: dict[str, Session] = {}
        self.grants: dict[str, Grant] = {}  # fingerprint -> one-use grant
        self.deny = tuple(word.upper() for word in deny)
        self.records: list[dict[str, Any]] = []
        self.fail_recording = False
        self.explode_on: str | None = None
        self.before_record: Callable[[Sequence[StatementDecision]], None] | None = None
        self.record_delay = 0.0  # seconds before the entries count as durable
        self._lock = threading.Lock()

    # test helpers
    def new_session(
        self,
        database: str,
        *,
        ttl: float = 3600,
        revoked: bool = False,
        upstream: Upstream | None = None,
    ) -> tuple[Session, str]:
        secret = new_secret()
        now = utcnow()
        session = Session(
            id=new_session_id(),
            verifier=ScramVerifier.create(secret),
            principal=Principal(iss="https://issuer.test", sub="repo:acme/ehr:ref:main"),
            database=database,
            role="migrator",
            created_at=now - dt.timedelta(seconds=10),
            expires_at=now + dt.timedelta(seconds=ttl),
            revoked_at=now if revoked else None,
        )
        self.sessions[session.id] = session
        if upstream is not None:
            self.upstreams[session.id] = upstream
        return session, secret

    def of(self, session_id: str, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.records if r["session"] == session_id and r["kind"] == kind]

    def outcome(self, seq: int) -> Outcome | None:
        with self._lock:
            for record in self.records:
                if record["kind"] == "outcome" and record["ref"] == seq:
                    found: Outcome = record["outcome"]
                    return found
        return None

    def wait_outcome(self, seq: int, timeout: float = 10.0) -> Outcome:
        return wait_for(lambda: self.outcome(seq), timeout, f"outcome of statement {seq}")

    def statements(self, session_id: str, containing: str = "") -> list[dict[str, Any]]:
        return [r for r in self.of(session_id, "statement") if containing in r["text"]]

    def events(self, session_id: str | None) -> list[str]:
        with self._lock:
            return [
                r["event"]
                for r in self.records
                if r["kind"] == "event" and r["session"] == session_id
            ]

    # ProxyBackend
    async def session(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def upstream(self, session: Session) -> Upstream:
        return self.upstreams.get(session.id, self.default_upstream)

    def decide(
        self, session: Session, sql_text: str, *, in_transaction: bool
    ) -> list[StatementDecision]:
        if self.explode_on is not None and self.explode_on in sql_text:
            raise RuntimeError("policy bug")
        decisions: list[StatementDecision] = []
        for statement in lint_text(sql_text).statements:
            findings = tuple(f.to_json() for f in statement.findings)
            rules = [f.rule for f in statement.findings if f.needs_approval]
            denied = [word for word in self.deny if word in statement.text.upper()]
            decision, reason, grant = AuditDecision.ALLOWED, None, None
            if denied:
                decision = AuditDecision.BLOCKED
                reason = f"{denied[0]} is on the gateway's deny list; nothing allows it"
            elif rules:
                grant = self.grants.pop(statement.fingerprint, None)
                if grant is not None:
                    decision = AuditDecision.APPROVED
                else:
                    decision = AuditDecision.BLOCKED
                    reason = (
                        f"{', '.join(rules)} need an approval: approve the plan on the pull "
                        "request (/signoff approve <plan hash>)"
                    )
            decisions.append(
                StatementDecision(
                    text=statement.text,
                    sha256=statement.sha256,
                    fingerprint=statement.fingerprint,
                    findings=findings,
                    decision=decision,
                    reason=reason,
                    grant=grant,
                )
            )
        return decisions

    def submit_statements(
        self,
        session: Session,
        decisions: Sequence[StatementDecision],
        done: Callable[[list[int] | None], None],
    ) -> None:
        # Like the real audit writer: durable first, the callback one loop turn later.
        loop = asyncio.get_running_loop()
        if self.fail_recording:
            loop.call_soon(done, None)
            return
        if self.before_record is not None:
            self.before_record(decisions)
        seqs = []
        with self._lock:
            for decision in decisions:
                self.records.append(
                    {
                        "kind": "statement",
                        "seq": len(self.records) + 1,
                        "session": session.id,
                        "text": decision.text,
                        "decision": decision.decision.value,
                        "grant": decision.grant.id if decision.grant else None,
                    }
                )
                seqs.append(len(self.records))
        loop.call_later(self.record_delay, done, seqs)

    def submit_outcomes(self, session: Session, outcomes: Sequence[tuple[int, Outcome]]) -> None:
        with self._lock:
            for seq, outcome in outcomes:
                self.records.append(
                    {"kind": "outcome", "session": session.id, "ref": seq, "outcome": outcome}
                )

    def fast_lane(self, session: Session) -> None:
        return None  # this backend's tests are the Python relay's (the lane's use the service)

    async def record_event(self, session: Session | None, event: str, **data: Any) -> None:
        with self._lock:
            self.records.append(
                {
                    "kind": "event",
                    "session": session.id if session else None,
                    "event": event,
                    **data,
                }
            )


def wait_closed(backend: AuditBackend, session_id: str) -> list[str]:
    """The session's events once "closed" is among them."""

    def closed() -> list[str] | None:
        events = backend.events(session_id)
        return events if "closed" in events else None

    return wait_for(closed, 5, "the closed event")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- the event loop the proxy runs on (the tests' clients are synchronous) --------------------


class LoopThread:
    def __init__(self, kind: str = "asyncio") -> None:
        if kind == "uvloop":
            uvloop = pytest.importorskip("uvloop")
            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def loop_thread(request: pytest.FixtureRequest) -> Iterator[LoopThread]:
    """The proxy runs on the default loop and on uvloop (what ``serve`` uses)."""
    lt = LoopThread(request.param)
    yield lt
    lt.close()


# -- the main upstream: a scratch database on pg_url, reached as a login role -----------------


def _upstream_from_url(url: str, dbname: str, user: str, password: str | None) -> Upstream:
    info = conninfo_to_dict(url)
    host = str(info.get("host") or "127.0.0.1")
    return Upstream(host, int(info.get("port") or 5432), dbname, user, password, "prefer")


@pytest.fixture(scope="module")
def upstream_db(pg_url: str, loop_thread: LoopThread) -> Iterator[tuple[Upstream, str]]:
    """(Upstream for a login role owning a scratch database, admin URL of that database);
    one per event loop kind, so each run starts from an empty database."""
    role = "signoff_up_" + secrets.token_hex(4)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SET password_encryption = 'scram-sha-256'")
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(UPSTREAM_PASSWORD)
            )
        )
    try:
        with scratch_database(pg_url, prefix="signoff_proxy") as url:
            dbname = str(conninfo_to_dict(url)["dbname"])
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                        sql.Identifier(dbname), sql.Identifier(role)
                    )
                )
                admin.execute(
                    sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(role))
                )
            yield _upstream_from_url(pg_url, dbname, role, UPSTREAM_PASSWORD), url
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def backend(upstream_db: tuple[Upstream, str]) -> AuditBackend:
    return AuditBackend(upstream_db[0])


@pytest.fixture(scope="module")
def proxy(loop_thread: LoopThread, backend: AuditBackend) -> Iterator[PgProxy]:
    # SCRAM for every client, loopback too: the exchange real clients must complete.
    server = PgProxy(backend, ProxyConfig(allow_cleartext_on_loopback=False))
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


@pytest.fixture(scope="module")
def dbname(upstream_db: tuple[Upstream, str]) -> str:
    return upstream_db[0].dbname


@pytest.fixture
def admin(upstream_db: tuple[Upstream, str]) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection to the scratch database as the upstream role (to set up tables
    and look behind the proxy: its pg_stat_activity rows, pg_terminate_backend)."""
    with psycopg.connect(upstream_db[1], autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(upstream_db[0].user)))
        yield conn


def connect(
    proxy: PgProxy, session: Session, secret: str, dbname: str | None = None, **kwargs: Any
) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=proxy.port,
        user=session.id,
        password=secret,
        dbname=dbname or session.database,
        sslmode=kwargs.pop("sslmode", "disable"),
        connect_timeout=10,
        **kwargs,
    )


def run_psql(
    port: int, user: str, secret: str, dbname: str, *args: str, extra: str = ""
) -> subprocess.CompletedProcess[str]:
    assert PSQL is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = secret
    conninfo = f"host=127.0.0.1 port={port} user={user} dbname={dbname} {extra}".strip()
    return subprocess.run(
        [PSQL, "-X", "-v", "VERBOSITY=verbose", conninfo, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


needs_psql = pytest.mark.skipif(PSQL is None, reason="psql is not installed")


# -- a raw protocol client (exact bytes) ---------------------------------------------------------


# -- psql, psycopg: the real clients -----------------------------------------------------------


@needs_psql
def test_psql_connects_and_runs_queries(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, secret = backend.new_session(dbname)
    done = run_psql(
        proxy.port,
        session.id,
        secret,
        dbname,
        "-c",
        "CREATE TABLE psql_t (id int primary key, note text)",
        "-c",
        "INSERT INTO psql_t VALUES (1, 'one'), (2, 'two')",
        "-A",
        "-t",
        "-c",
        "SELECT note FROM psql_t ORDER BY id",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CREATE", "TABLE", "INSERT", "0", "2", "one", "two"]
    texts = [r["text"] for r in backend.statements(session.id)]
    assert texts == [
        "CREATE TABLE psql_t (id int primary key, note text)",
        "INSERT INTO psql_t VALUES (1, 'one'), (2, 'two')",
        "SELECT note FROM psql_t ORDER BY id",
    ]
    seqs = [r["seq"] for r in backend.statements(session.id)]
    outcomes = [backend.wait_outcome(seq) for seq in seqs]
    assert [o.tag for o in outcomes] == ["CREATE TABLE", "INSERT 0 2", "SELECT 2"]
    assert [o.rows for o in outcomes] == [None, 2, 2]
    assert all(o.status == "completed" and o.duration_ms >= 0 for o in outcomes)
    events = wait_closed(backend, session.id)
    assert events[0] == "authenticated"


@needs_psql
def test_psql_blocked_statement_names_the_rule_and_what_allows_it(
    proxy: PgProxy, backend: AuditBackend, dbname: str, admin: psycopg.Connection[Any]
) -> None:
    admin.execute("CREATE TABLE psql_keep (id int)")
    session, secret = backend.new_session(dbname)
    done = run_psql(
        proxy.port, session.id, secret, dbname, "-c", "DROP TABLE psql_keep", "-c", "SELECT 7"
    )
    assert "ERROR:  42501: signoff blocked the statement (SO101)" in done.stderr
    assert "/signoff approve" in done.stderr
    assert "7" in done.stdout  # the connection stayed usable
    assert admin.execute("SELECT to_regclass('psql_keep') IS NOT NULL").fetchone() == (True,)


def test_psycopg_simple_and_extended(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, secret = backend.new_session(dbname)
    with connect(proxy, session, secret, autocommit=True) as conn:
        conn.execute("CREATE TABLE ext_t (id int, name text)")
        # simple protocol (no parameters): one Query with two statements
        cur = conn.execute("INSERT INTO ext_t VALUES (1, 'a'); INSERT INTO ext_t VALUES (2, 'b')")
        assert cur.rowcount == 1
        # extended protocol: Parse/Bind/Describe/Execute/Sync
        cur = conn.execute("SELECT name FROM ext_t WHERE id = %s", (2,))
        assert cur.fetchall() == [("b",)]
        # binary results, still extended
        cur = conn.cursor(binary=True)
        cur.execute("SELECT %s::int + 1", (41,))
        assert cur.fetchone() == (42,)
        # prepared statements: named Parse once, then Bind/Execute only
        for i in range(8):
            got = conn.execute("SELECT count(*) + %s FROM ext_t", (i,), prepare=True).fetchone()
            assert got == (2 + i,)
    prepared = backend.statements(session.id, "SELECT count(*) + $1 FROM ext_t")
    assert len(prepared) == 8  # one entry per Execute, prepared or not
    for record in prepared:
        assert backend.wait_outcome(record["seq"]).tag == "SELECT 1"
    inserts = backend.statements(session.id, "INSERT INTO ext_t")
    assert [r["text"] for r in inserts] == [
        "INSERT INTO ext_t VALUES (1, 'a')",
        "INSERT INTO ext_t VALUES (2, 'b')",
    ]
    assert [backend.wait_outcome(r["seq"]).tag for r in inserts] == ["INSERT 0 1", "INSERT 0 1"]


def test_nothing_is_decided_once_the_server_reads_backslashes_differently(
    proxy: PgProxy, backend: AuditBackend, dbname: str
) -> None:
    """standard_conforming_strings off (here by a SET this test backend lets through;
    the gateway's policy refuses it, see test_gateway_policy): the server reports it,
    and from then on the proxy refuses every statement on that connection."""
    session, secret = backend.new_session(dbname)
    with connect(proxy, session, secret, autocommit=True) as conn:
        assert conn.execute("SELECT 'a\\b'").fetchone() == ("a\\b",)
        conn.execute("SET standard_conforming_strings = off")
        with pytest.raises(errors.InsufficientPrivilege, match="standard_conforming_strings"):
            conn.execute("SELECT 1")
        with pytest.raises(errors.InsufficientPrivilege, match="reconnect"):
            conn.execute("RESET standard_conforming_strings")
    with connect(proxy, session, secret, autocommit=True) as conn:  # a new connection
        assert conn.execute("SELECT 2").fetchone() == (2,)
    refused = backend.statements(session.id, "SELECT 1")
    assert [r["decision"] for r in refused] == ["blocked"]


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_a_backslash_text_pipelined_behind_running_statements_is_refused(
    proxy: PgProxy,
    backend: AuditBackend,
    admin: psycopg.Connection[Any],
    dbname: str,
    protocol: str,
) -> None:
    """The classic: with standard_conforming_strings off, "SELECT 'a\\''; DROP ..."
    is a SELECT and a DROP to the server, one harmless string to the analysis. The
    server reports the setting only at its next ReadyForQuery, so a statement that
    turns it off (here a SET this test backend lets through; in production, an
    existing function the role may call) with such a text pipelined behind it
    would run the DROP: the text is refused until the statements ahead of it have
    answered. Sent afterwards, it meets the reported setting and is refused too."""
    victim = f"victim_{protocol}"
    admin.execute(f"CREATE TABLE {victim} (id int)")
    session, secret = backend.new_session(dbname)
    injected = f"SELECT 'a\\''; DROP TABLE {victim}; -- '"
    turn_off = "SET standard_conforming_strings = off"

    def run(text: str) -> list[bytes]:
        if protocol == "simple":
            return [wire.query(text)]
        return [wire.parse(b"", text), bind(b"", b""), execute(), wire.sync()]

    client = RawClient(proxy.port)
    try:
        assert client.startup(session.id, dbname, secret)[-1][0] == "Z"
        client.send(*run("SELECT 'a\\b'"), *run("SELECT 1"))  # nothing ran before it
        assert [k for k, _ in client.until("Z")] == (
            ["T", "D", "C", "Z"] if protocol == "simple" else ["1", "2", "D", "C", "Z"]
        )
        client.until("Z")
        client.send(*run(turn_off), *run(injected))
        client.until("Z")
        pipelined = error_of(client.until("Z"))
        client.send(*run(injected))
        afterwards = error_of(client.until("Z"))
    finally:
        client.close()
    assert pipelined["C"] == "42501" and "answered" in pipelined["M"]
    assert afterwards["C"] == "42501" and "reconnect" in afterwards["M"]
    assert admin.execute(f"SELECT to_regclass('{victim}') IS NOT NULL").fetchone() == (True,)


def test_multi_statement_error_marks_the_rest_not_run(
    proxy: PgProxy, backend: AuditBackend, dbname: str
) -> None:
    session, secret = backend.new_session(dbname)
    with connect(proxy, session, secret, autocommit=True) as conn:
        with pytest.raises(errors.DivisionByZero):
            conn.execute("SELECT 1; SELECT 1/0; SELECT 3")
        assert conn.execute("SELECT 4").fetchone() == (4,)
    records = backend.statements(session.id)
    outcomes = [backend.wait_outcome(r["seq"]) for r in records[:3]]
    assert [(o.status, o.tag, o.sqlstate) for o in outcomes] == [
        ("completed", "SELECT 1", None),
        ("failed", None, "22012"),
        ("not-run", None, None),
    ]


def test_pipeline_mode(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, secret = backend.new_session(dbname)
    with connect(proxy, session, secret, autocommit=True) as conn:
        conn.execute("CREATE TABLE pipe_t (id int)")
        with conn.pipeline():
            cursors = [conn.execute("INSERT INTO pipe_t VALUES (%s)", (i,)) for i in range(50)]
            total = conn.execute("SELECT count(*), sum(id) FROM pipe_t")
        assert all(c.rowcount == 1 for c in cursors)
        assert total.fetchone() == (50, sum(range(50)))
    inserts = backend.statements(session.id, "INSERT INTO pipe_t")
    assert len(inserts) == 50
    assert {backend.wait_outcome(r["seq"]).tag for r in inserts} == {"INSERT 0 1"}


def test_blocked_in_extended_pipeline_arrives_in_order(
    proxy: PgProxy, backend: AuditBackend, dbname: str, admin: psycopg.Connection[Any]
) -> None:
    admin.execute("CREATE TABLE pipe_keep (id int)")
    session, secret = backend.new_session(dbname)
    with connect(proxy, session, secret, autocommit=True) as conn:
        with conn.pipeline() as pipeline:
            first = conn.execute("SELECT 1")
            conn.execute("DROP TABLE pipe_keep")
            skipped = conn.execute("SELECT 3")
            with pytest.raises(errors.InsufficientPrivilege) as blocked:
                pipeline.sync()
            after = conn.execute("SELECT 4")
            assert first.fetchone() == (1,)
            with pytest.raises(psycopg.ProgrammingError):
                skipped.fetchone()  # skipped by the server until Sync, as after any error
            assert after.fetchone() == (4,)
        assert conn.execute("SELECT 5").fetchone() == (5,)
    assert blocked.value.sqlstate == "42501"
    assert "SO101" in str(blocked.value)
    assert admin.execute("SELECT to_regclass('pipe_keep') IS NOT NULL").fetchone() == (True,)
    drop = backend.statements(session.id, "DROP TABLE pipe_keep")
    assert [r["decision"] for r in drop] == ["blocked"]
    assert backend.wait_outcome(drop[0]["seq"]).sqlstate == "42501"
    skipped_record = backend.statements(session.id, "SELECT 3")
    assert backend.wait_outcome(skipped_record[0]["seq"]).status == "not-run"


def test_blocked_simple_query_keeps_connection_usable(
    proxy: PgProxy, backend: AuditBackend, dbname: str, admin: psycopg.Connection[Any]
) -> None:
    admin.execute("CREATE TABLE simple_keep (id int)")
    session, secret = backend.new_session(dbname)
    with connect(proxy, session, secret, autocommit=True) as conn:
        result = conn.pgconn.exec_(b"DROP TABLE simple_keep")  # PQexec: simple protocol
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42501"
        message = (result.error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY) or b"").decode()
        assert "SO101" in message and "approve" in message
        # a multi-statement string with one blocked statement runs none of it
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("INSERT INTO simple_keep VALUES (1); TRUNCATE simple_keep")
        assert conn.execute("SELECT count(*) FROM simple_keep").fetchone() == (0,)
    assert admin.execute("SELECT to_regclass('simple_keep') IS NOT NULL").fetchone() == (True,)
    records = backend.statements(session.id)
    assert [(r["text"], r["decision"]) for r in records[:3]] == [
        ("DROP TABLE simple_keep", "blocked"),
        ("INSERT INTO simple_keep VALUES (1)", "allowed"),
        ("TRUNCATE simple_keep", "blocked"),
    ]
    assert [backend.wait_outcome(r["seq"]) for r in records[:3]] == [
        Outcome(sqlstate="42501", status="not-run"),
        Outcome(status="not-run"),
        Outcome(sqlstate="42501", status="not-run"),
    ]


@pytest.mark.parametrize("extended", [False, True], ids=["simple", "extended"])
def test_blocked_inside_transaction_fails_the_block(
    proxy: PgProxy,
    backend: AuditBackend,
    dbname: str,
    admin: psycopg.Connection[Any],
    extended: bool,
) -> None:
    table = f"txn_keep_{int(extended)}"
    admin.execute(f"CREATE TABLE {table} (id int)")
    session, secret = backend.new_session(dbname)
    with connect(proxy, session, secret, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO {table} VALUES (1)")
        with pytest.raises(errors.InsufficientPrivilege):
            if extended:
                conn.execute(f"DROP TABLE {table}", prepare=True)
            else:
                conn.execute(f"DROP TABLE {table}")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    assert admin.execute(f"SELECT to_regclass('{table}') IS NOT NULL").fetchone() == (True,)


def test_approved_statement_runs_once(
    proxy: PgProxy, backend: AuditBackend, dbname: str, admin: psycopg.Connection[Any]
) -> None:
    admin.execute("CREATE TABLE approved_drop (id int)")
    statement = lint_text("DROP TABLE approved_drop").statements[0]
    backend.grants[statement.fingerprint] = Grant(
        id="g-1",
        database=dbname,
        fingerprint=statement.fingerprint,
        approver="reviewer",
        evidence_url="https://code.test/pr/1#c1",
        created_at=utcnow(),
    )
    session, secret = backend.new_session(dbname)
    with connect(proxy, session, secret, autocommit=True) as conn:
        conn.execute("DROP TABLE approved_drop")
        admin.execute("CREATE TABLE approved_drop (id int)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DROP TABLE approved_drop")  # the grant was for one run
    records = backend.statements(session.id, "DROP TABLE approved_drop")
    assert [(r["decision"], r["grant"]) for r in records] == [
        ("approved", "g-1"),
        ("blocked", None),
    ]
    assert backend.wait_outcome(records[0]["seq"]).tag == "DROP TABLE"


def test_approved_prepared_statement_runs_once(
    proxy: PgProxy, backend: AuditBackend, dbname: str, admin: psycopg.Connection[Any]
) -> None:
    """The grant is consumed at Parse; binding and executing the prepared statement
    again does not run it again."""
    admin.execute("CREATE TABLE approved_prep (id int)")
    statement = lint_text("DROP TABLE approved_prep").statements[0]
    backend.grants[statement.fingerprint] = Grant(
        id="g-prep",
        database=dbname,
        fingerprint=statement.fingerprint,
        approver="reviewer",
        evidence_url=None,
        created_at=utcnow(),
    )
    session, secret = backend.new_session(dbname)
    client = RawClient(proxy.port)
    try:
        client.startup(session.id, dbname, secret)
        client.send(
            wire.parse(b"drop_it", "DROP TABLE approved_prep"),
            bind(b"", b"drop_it"),
            execute(),
            wire.sync(),
        )
        first = client.until("Z")
        assert [k for k, _ in first] == ["1", "2", "C", "Z"]
        admin.execute("CREATE TABLE approved_prep (id int)")
        client.send(bind(b"", b"drop_it"), execute(), wire.sync())
        second = client.until("Z")
        assert [k for k, _ in second] == ["2", "E", "Z"]
        error = error_of(second)
        assert error["C"] == "42501" and "covered one run" in error["M"]
        assert [k for k, _ in client.query("SELECT 1")] == ["T", "D", "C", "Z"]
    finally:
        client.close()
    assert admin.execute("SELECT to_regclass('approved_prep') IS NOT NULL").fetchone() == (True,)
    records = backend.statements(session.id, "DROP TABLE approved_prep")
    assert [(r["decision"], r["grant"]) for r in records] == [
        ("approved", "g-prep"),
        ("blocked", None),
    ]
    assert backend.wait_outcome(records[1]["seq"]) == Outcome(sqlstate="42501", status="not-run")


def test_portal_suspended_and_continued(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, secret = backend.new_session(dbname)
    client = RawClient(proxy.port)
    try:
        client.startup(session.id, dbname, secret)
        client.query("BEGIN")
        client.send(
            wire.parse(b"", "SELECT g FROM generate_series(1, 5) g"),
            bind(b"p1", b""),
            execute(b"p1", 2),
            execute(b"p1", 2),
            execute(b"p1", 0),
            wire.sync(),
        )
        kinds = [k for k, _ in client.until("Z")]
        assert kinds == ["1", "2", "D", "D", "s", "D", "D", "s", "D", "C", "Z"]
        client.query("COMMIT")
    finally:
        client.close()
    records = backend.statements(session.id, "generate_series(1, 5)")
    outcomes = [backend.wait_outcome(r["seq"]) for r in records]
    assert [o.tag for o in outcomes] == [None, None, "SELECT 1"]
    assert all(o.status == "completed" for o in outcomes)


def test_statement_is_recorded_before_it_is_forwarded(
    proxy: PgProxy,
    backend: AuditBackend,
    dbname: str,
    admin: psycopg.Connection[Any],
    upstream_db: tuple[Upstream, str],
) -> None:
    admin.execute("CREATE TABLE probe_t (id int)")
    seen: list[int] = []

    def check(decisions: Sequence[StatementDecision]) -> None:
        if any("probe_t VALUES" in d.text for d in decisions):
            with psycopg.connect(upstream_db[1]) as peek:
                row = peek.execute("SELECT count(*) FROM probe_t").fetchone()
                assert row is not None
                seen.append(row[0])

    backend.before_record = check
    session, secret = backend.new_session(dbname)
    try:
        with connect(proxy, session, secret, autocommit=True) as conn:
            conn.execute("INSERT INTO probe_t VALUES (1)")
            conn.execute("INSERT INTO probe_t VALUES (%s)", (2,))
    finally:
        backend.before_record = None
    assert seen == [0, 1]  # each insert was not yet run when its entry was written
    backend.fail_recording = True
    try:
        with connect(proxy, session, secret, autocommit=True) as conn:
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("INSERT INTO probe_t VALUES (3)")
            assert refused.value.sqlstate == "58000"
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("INSERT INTO probe_t VALUES (%s)", (4,))
            assert refused.value.sqlstate == "58000"
            backend.fail_recording = False
            assert conn.execute("SELECT count(*) FROM probe_t").fetchone() == (2,)
    finally:
        backend.fail_recording = False


def test_policy_failure_is_a_refusal(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, secret = backend.new_session(dbname)
    backend.explode_on = "explode_here"
    try:
        with connect(proxy, session, secret, autocommit=True) as conn:
            with pytest.raises(errors.InsufficientPrivilege, match="policy failed"):
                conn.execute("SELECT 'explode_here'")
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        backend.explode_on = None
    assert [r["decision"] for r in backend.statements(session.id, "explode_here")] == ["blocked"]


def test_copy_in_and_out(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, secret = backend.new_session(dbname)
    rows = 60_000
    with connect(proxy, session, secret, autocommit=True) as conn:
        conn.execute("CREATE TABLE copy_t (id int, payload text)")
        with conn.cursor().copy("COPY copy_t FROM STDIN") as copy:
            for i in range(rows):
                copy.write_row((i, f"row {i} " + "x" * 40))
        assert conn.execute("SELECT count(*) FROM copy_t").fetchone() == (rows,)
        out = bytearray()
        with conn.cursor().copy("COPY copy_t TO STDOUT") as copy:
            for chunk in copy:
                out += chunk
        assert out.count(b"\n") == rows
        # a failed COPY FROM leaves the connection usable
        with (
            pytest.raises(errors.InvalidTextRepresentation),
            conn.cursor().copy("COPY copy_t (id) FROM STDIN") as copy,
        ):
            copy.write(b"1\nnot-a-number\n")
        assert conn.execute("SELECT count(*) FROM copy_t").fetchone() == (rows,)
    copy_in, copy_out, failed = backend.statements(session.id, "COPY copy_t")
    assert backend.wait_outcome(copy_in["seq"]).tag == f"COPY {rows}"
    assert backend.wait_outcome(copy_in["seq"]).rows == rows
    assert backend.wait_outcome(copy_out["seq"]).tag == f"COPY {rows}"
    assert backend.wait_outcome(failed["seq"]).sqlstate == "22P02"


def test_copy_in_extended_protocol_libpq_pattern(
    proxy: PgProxy, backend: AuditBackend, dbname: str
) -> None:
    """Parse/Bind/Describe/Execute/Sync then CopyData/CopyDone/Sync: the server
    ignores the first Sync (it arrives in COPY mode); one ReadyForQuery comes back."""
    session, secret = backend.new_session(dbname)
    client = RawClient(proxy.port)
    try:
        assert client.startup(session.id, dbname, secret)[-1][0] == "Z"
        client.query("CREATE TABLE copy_ext (id int)")
        client.send(
            wire.parse(b"", "COPY copy_ext FROM STDIN"),
            bind(b"", b""),
            describe_portal(),
            execute(),
            wire.sync(),
        )
        kinds = [k for k, _ in client.until("G")]
        assert kinds == ["1", "2", "n", "G"]
        client.send(wire.message(wire.COPY_DATA, b"1\n2\n3\n"), wire.message(wire.COPY_DONE))
        client.send(wire.sync())
        done = client.until("Z")
        assert [k for k, _ in done] == ["C", "Z"]
        assert wire.parse_command_tag(done[0][1]) == "COPY 3"
        after = client.query("SELECT count(*) FROM copy_ext")
        assert [k for k, _ in after] == ["T", "D", "C", "Z"]
        client.send(wire.terminate())
    finally:
        client.close()
    copy_record = backend.statements(session.id, "COPY copy_ext")[0]
    assert backend.wait_outcome(copy_record["seq"]).tag == "COPY 3"
    count_record = backend.statements(session.id, "SELECT count(*) FROM copy_ext")[0]
    assert backend.wait_outcome(count_record["seq"]).tag == "SELECT 1"


def test_copy_in_extended_protocol_error(
    proxy: PgProxy, backend: AuditBackend, dbname: str
) -> None:
    """Bad data in an extended-protocol COPY: the error, then the server skips to the
    Sync after CopyDone; the early Sync was read in COPY mode and ignored."""
    session, secret = backend.new_session(dbname)
    client = RawClient(proxy.port)
    try:
        client.startup(session.id, dbname, secret)
        client.query("CREATE TABLE copy_ext_bad (id int)")
        client.send(
            wire.parse(b"", "COPY copy_ext_bad FROM STDIN"),
            bind(b"", b""),
            execute(),
            wire.sync(),
        )
        assert [k for k, _ in client.until("G")] == ["1", "2", "G"]
        client.send(wire.message(wire.COPY_DATA, b"1\nnope\n"))
        error = client.until("E")
        assert error_of(error)["C"] == "22P02"
        client.send(wire.message(wire.COPY_DONE), wire.sync())
        assert [k for k, _ in client.until("Z")] == ["Z"]
        assert [k for k, _ in client.query("SELECT count(*) FROM copy_ext_bad")] == [
            "T",
            "D",
            "C",
            "Z",
        ]
    finally:
        client.close()
    copy_record = backend.statements(session.id, "COPY copy_ext_bad")[0]
    assert backend.wait_outcome(copy_record["seq"]).sqlstate == "22P02"
    count_record = backend.statements(session.id, "SELECT count(*) FROM copy_ext_bad")[0]
    assert backend.wait_outcome(count_record["seq"]).tag == "SELECT 1"


def test_large_results_pass_through(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, secret = backend.new_session(dbname)
    with connect(proxy, session, secret, autocommit=True) as conn:
        rows = conn.execute("SELECT g, md5(g::text) FROM generate_series(1, 200000) g").fetchall()
        assert len(rows) == 200_000 and rows[-1][0] == 200_000
        wide = conn.execute("SELECT repeat('y', 3000000) FROM generate_series(1, 3)").fetchall()
        assert [len(r[0]) for r in wide] == [3_000_000] * 3
        big = "z" * 5_000_000
        assert conn.execute("SELECT length(%s::text)", (big,)).fetchone() == (5_000_000,)
        assert conn.execute(f"SELECT length('{big}')").fetchone() == (5_000_000,)
    record = backend.statements(session.id, "generate_series(1, 200000)")[0]
    assert backend.wait_outcome(record["seq"]).rows == 200_000


def test_notices_and_notifications_are_relayed(
    proxy: PgProxy, backend: AuditBackend, dbname: str
) -> None:
    session, secret = backend.new_session(dbname)
    notices: list[str] = []
    with connect(proxy, session, secret, autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute("DO $$ BEGIN RAISE NOTICE 'hello from upstream'; END $$")
        conn.execute("LISTEN signoff_channel")
        conn.execute("NOTIFY signoff_channel, 'payload-1'")
        got = list(conn.notifies(timeout=5, stop_after=1))
        conn.execute("SET application_name = 'renamed'")
        assert conn.info.parameter_status("application_name") == "renamed"
    assert notices == ["hello from upstream"]
    assert [(n.channel, n.payload) for n in got] == [("signoff_channel", "payload-1")]


def test_cancel(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, secret = backend.new_session(dbname)
    with connect(proxy, session, secret, autocommit=True) as conn:
        assert conn.info.backend_pid != 0
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 10
        timer.join()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    sleeps = backend.statements(session.id, "pg_sleep(30)")
    assert [backend.wait_outcome(r["seq"]).sqlstate for r in sleeps] == ["57014"]
    assert "cancel" in backend.events(session.id)


@needs_psql
def test_cancel_from_psql(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    """psql's ^C: the legacy PQcancel path. (A separate process: libpq's PQcancel
    blocks holding psycopg's GIL, so it cannot target a proxy in this process.)"""
    assert PSQL is not None
    session, secret = backend.new_session(dbname)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = secret
    conninfo = f"host=127.0.0.1 port={proxy.port} user={session.id} dbname={dbname}"
    started = time.monotonic()
    with subprocess.Popen(
        [PSQL, "-X", conninfo, "-c", "SELECT pg_sleep(30)"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as psql:
        wait_for(lambda: backend.statements(session.id, "pg_sleep"), 10, "the query to start")
        time.sleep(0.3)
        psql.send_signal(signal.SIGINT)
        _, stderr = psql.communicate(timeout=20)
    assert time.monotonic() - started < 15
    assert "canceling statement due to user request" in stderr
    record = backend.statements(session.id, "pg_sleep")[0]
    assert backend.wait_outcome(record["seq"]).sqlstate == "57014"


def test_cancel_with_unknown_key_does_nothing(proxy: PgProxy) -> None:
    client = RawClient(proxy.port)
    try:
        client.send(wire.cancel_request(12345, 67890))
        assert client.sock.recv(10) == b""  # closed without an answer, like PostgreSQL
    finally:
        client.close()


# -- authentication and sessions --------------------------------------------------------------


def test_wrong_secret_and_unknown_session_look_the_same(
    proxy: PgProxy, backend: AuditBackend, dbname: str
) -> None:
    session, _ = backend.new_session(dbname)
    flows = []
    for user, secret in ((session.id, "wrong-secret"), (new_session_id(), "whatever")):
        client = RawClient(proxy.port)
        try:
            messages = client.startup(user, dbname, secret)
        finally:
            client.close()
        flows.append(auth_codes(messages))
        error = error_of(messages)
        assert error["S"] == "FATAL"
        assert error["M"] == f'password authentication failed for user "{user}"'
        sasl_continue = wire.parse_authentication(messages[1][1])[1].decode()
        attributes = dict(part.split("=", 1) for part in sasl_continue.split(","))
        assert attributes["i"] == "4096"
        assert len(base64.b64decode(attributes["s"])) == 16
    assert flows[0] == flows[1] == ["R10", "R11", "E28P01"]
    assert "auth-failed" in backend.events(session.id)
    assert "auth-failed" in backend.events(None)


def test_wrong_secret_with_psycopg(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, _ = backend.new_session(dbname)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(proxy, session, "not-the-secret")


@pytest.mark.parametrize("state", ["expired", "revoked"])
def test_expired_or_revoked_session_is_refused(
    proxy: PgProxy, backend: AuditBackend, dbname: str, state: str
) -> None:
    session, secret = backend.new_session(
        dbname, ttl=-1 if state == "expired" else 3600, revoked=state == "revoked"
    )
    client = RawClient(proxy.port)
    try:
        messages = client.startup(session.id, dbname, secret)
    finally:
        client.close()
    assert auth_codes(messages) == ["R10", "R11", "E28000"]
    assert error_of(messages)["M"] == f"session {state}"
    with pytest.raises(psycopg.OperationalError, match=f"session {state}"):
        connect(proxy, session, secret)


def test_wrong_database(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, secret = backend.new_session(dbname)
    client = RawClient(proxy.port)
    try:
        messages = client.startup(session.id, "some_other_db", secret)
    finally:
        client.close()
    assert error_of(messages)["C"] == "3D000"
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        connect(proxy, session, secret, dbname="some_other_db")


def test_startup_options(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, secret = backend.new_session(dbname)
    with connect(
        proxy, session, secret, options="-c statement_timeout=1234", application_name="probe"
    ) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
        assert conn.execute("SHOW application_name").fetchone() == ("probe",)
    with pytest.raises(psycopg.OperationalError, match="not allowed through the gateway"):
        connect(proxy, session, secret, options="-c session_replication_role=replica")


def test_newer_protocol_minor_is_negotiated(
    proxy: PgProxy, backend: AuditBackend, dbname: str
) -> None:
    session, secret = backend.new_session(dbname)
    client = RawClient(proxy.port)
    try:
        messages = client.startup(
            session.id,
            dbname,
            secret,
            version=(3 << 16) | 2,
            extra={"_pq_.some_option": "on"},
        )
        assert messages[0][0] == "v"
        version, count = struct.unpack_from("!ii", messages[0][1])
        assert version == wire.PROTOCOL_3_0 and count == 1
        assert messages[-1][0] == "Z"
        assert [k for k, _ in client.query("SELECT 1")] == ["T", "D", "C", "Z"]
    finally:
        client.close()


def test_function_call_is_refused(proxy: PgProxy, backend: AuditBackend, dbname: str) -> None:
    session, secret = backend.new_session(dbname)
    client = RawClient(proxy.port)
    try:
        client.startup(session.id, dbname, secret)
        # FunctionCall of pg_backend_pid() (oid 2026), no arguments, text result
        client.send(wire.message(wire.FUNCTION_CALL, struct.pack("!Ihhh", 2026, 0, 0, 0)))
        reply = client.until("Z")
        assert error_of(reply)["C"] == "42501"
        assert [k for k, _ in client.query("SELECT 1")] == ["T", "D", "C", "Z"]
    finally:
        client.close()


def test_upstream_password_never_reaches_the_client(
    loop_thread: LoopThread,
    proxy: PgProxy,
    backend: AuditBackend,
    upstream_db: tuple[Upstream, str],
    dbname: str,
) -> None:
    good, good_secret = backend.new_session(dbname)
    received = bytearray()
    client = RawClient(proxy.port)
    try:
        client.startup(good.id, dbname, good_secret)
        for text in (
            "SELECT current_user, session_user",
            "SHOW ALL",
            "SELECT * FROM pg_stat_activity",
            "SELECT rolname FROM pg_roles",
            "SELECT 1/0",
            "DROP TABLE nowhere",
        ):
            client.query(text)
        client.send(wire.terminate())
    finally:
        client.close()
        received += client.received
    # a session whose upstream refuses the password: the error says nothing of it
    upstream = upstream_db[0]
    # The trust server never checks; point at a closed port instead (the refusal
    # with a real password check is in the temporary-cluster tests below).
    bad = Upstream("127.0.0.1", free_port(), dbname, upstream.user, UPSTREAM_PASSWORD, "prefer")
    refused, refused_secret = backend.new_session(dbname, upstream=bad)
    client = RawClient(proxy.port)
    try:
        messages = client.startup(refused.id, dbname, refused_secret)
        assert error_of(messages)["C"] == "08001"
    finally:
        client.close()
        received += client.received
    assert received
    assert UPSTREAM_PASSWORD.encode() not in received
    assert UPSTREAM_PASSWORD not in repr(backend.records)
    assert UPSTREAM_PASSWORD not in repr(bad)


def test_client_drop_mid_query_ends_the_upstream_query(
    proxy: PgProxy, backend: AuditBackend, dbname: str, admin: psycopg.Connection[Any]
) -> None:
    session, secret = backend.new_session(dbname)
    marker = "drop_probe_" + secrets.token_hex(4)
    client = RawClient(proxy.port)
    try:
        client.startup(session.id, dbname, secret)
        client.send(wire.query(f"SELECT pg_sleep(60), '{marker}'"))
        running = (
            "SELECT pid FROM pg_stat_activity "
            f"WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
        )
        wait_for(lambda: admin.execute(running).fetchall(), 10, "the upstream query to start")
    finally:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST: the client is gone
    wait_for(lambda: not admin.execute(running).fetchall() or None, 10, "the upstream to end")
    record = backend.statements(session.id, marker)[0]
    assert backend.wait_outcome(record["seq"]).status == "connection-lost"
    assert wait_for(lambda: "closed" in backend.events(session.id), 5, "closed event")


def test_client_gone_before_its_statement_is_recorded(
    proxy: PgProxy, backend: AuditBackend, dbname: str
) -> None:
    """The client leaves while its statement's entry is being written: the statement
    is never forwarded, and its outcome (not-run) is recorded before the close."""
    session, secret = backend.new_session(dbname)
    marker = "gone_probe_" + secrets.token_hex(4)
    client = RawClient(proxy.port)
    backend.record_delay = 0.5
    try:
        client.startup(session.id, dbname, secret)
        client.send(wire.query(f"SELECT '{marker}'"))
        wait_for(lambda: backend.statements(session.id, marker), 5, "the statement entry")
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST, before the entry is durable
        wait_for(lambda: "closed" in backend.events(session.id), 5, "closed event")
    finally:
        backend.record_delay = 0.0
    (record,) = backend.statements(session.id, marker)
    assert backend.wait_outcome(record["seq"]).status == "not-run"
    kinds = [r["kind"] for r in backend.records if r["session"] == session.id]
    assert kinds.index("outcome") < len(kinds) - 1 - kinds[::-1].index("event")


def test_upstream_killed_mid_query_is_an_error_not_a_hang(
    proxy: PgProxy, backend: AuditBackend, dbname: str, admin: psycopg.Connection[Any]
) -> None:
    session, secret = backend.new_session(dbname)
    marker = "kill_probe_" + secrets.token_hex(4)
    with connect(proxy, session, secret, autocommit=True) as conn:
        killer = threading.Timer(
            0.5,
            lambda: admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
            ),
        )
        killer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="terminating connection"):
            conn.execute(f"SELECT pg_sleep(60), '{marker}'")
        killer.join()
        assert time.monotonic() - started < 15
        assert conn.closed or conn.broken
    record = backend.statements(session.id, marker)[0]
    outcome = backend.wait_outcome(record["seq"])
    assert outcome.status == "connection-lost"


def test_upstream_connection_cut_gives_08006(
    loop_thread: LoopThread,
    proxy: PgProxy,
    backend: AuditBackend,
    upstream_db: tuple[Upstream, str],
    dbname: str,
) -> None:
    upstream = upstream_db[0]
    if upstream.host.startswith("/"):
        pytest.skip("the test server is reached over a unix socket")
    relay = loop_thread.run(Forwarder.start(upstream.host, upstream.port))
    try:
        via = Upstream("127.0.0.1", relay.port, dbname, upstream.user, upstream.password, "disable")
        session, secret = backend.new_session(dbname, upstream=via)
        with connect(proxy, session, secret, autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            threading.Timer(0.5, lambda: loop_thread.loop.call_soon_threadsafe(relay.cut)).start()
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError) as lost:
                conn.execute("SELECT pg_sleep(30)")
            assert time.monotonic() - started < 10
            assert lost.value.sqlstate in (None, "08006")
            assert "lost its connection" in str(lost.value)
    finally:
        loop_thread.run(relay.stop())
    events = wait_closed(backend, session.id)
    assert events[0] == "authenticated"


def test_upstream_down_at_connect_is_an_error(
    proxy: PgProxy, backend: AuditBackend, dbname: str
) -> None:
    down = Upstream("127.0.0.1", free_port(), dbname, "nobody", "pw", "prefer")
    session, secret = backend.new_session(dbname, upstream=down)
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="could not connect to the database"):
        connect(proxy, session, secret)
    assert time.monotonic() - started < 10
    assert "upstream-failed" in backend.events(session.id)


def test_stop_closes_every_connection(
    loop_thread: LoopThread, backend: AuditBackend, dbname: str
) -> None:
    server = PgProxy(backend, ProxyConfig(allow_cleartext_on_loopback=False))
    loop_thread.run(server.start())
    session, secret = backend.new_session(dbname)
    conn = connect(server, session, secret, autocommit=True)
    try:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        loop_thread.run(server.stop())
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    with pytest.raises(psycopg.OperationalError):
        connect(server, session, secret)
    assert "closed" in backend.events(session.id)


# -- TLS and cleartext towards clients ---------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def test_tls_to_clients(
    loop_thread: LoopThread, backend: AuditBackend, dbname: str, tls_files: tuple[Path, Path]
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
    server = PgProxy(backend, ProxyConfig(ssl_context=context))
    loop_thread.run(server.start())
    try:
        session, secret = backend.new_session(dbname)
        with connect(server, session, secret, sslmode="require") as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with connect(server, session, secret, sslmode="disable") as conn:
            assert not conn.pgconn.ssl_in_use
    finally:
        loop_thread.run(server.stop())


def test_no_tls_offered_without_a_context(
    proxy: PgProxy, backend: AuditBackend, dbname: str
) -> None:
    session, secret = backend.new_session(dbname)
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        connect(proxy, session, secret, sslmode="require")
    with connect(proxy, session, secret, sslmode="prefer") as conn:
        assert not conn.pgconn.ssl_in_use


@needs_psql
def test_cleartext_on_loopback_by_default(
    loop_thread: LoopThread, backend: AuditBackend, dbname: str
) -> None:
    server = PgProxy(backend, ProxyConfig())  # allow_cleartext_on_loopback=True
    loop_thread.run(server.start())
    try:
        session, secret = backend.new_session(dbname)
        done = run_psql(server.port, session.id, secret, dbname, "-A", "-t", "-c", "SELECT 3")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "3"
        wrong = run_psql(server.port, session.id, "nope", dbname, "-c", "SELECT 3")
        assert "password authentication failed" in wrong.stderr
        with connect(server, session, secret) as conn:
            assert conn.execute("SELECT 4").fetchone() == (4,)
        flows = []
        for user, attempt in ((session.id, "wrong"), (new_session_id(), "whatever")):
            client = RawClient(server.port)
            try:
                flows.append(auth_codes(client.startup(user, dbname, attempt)))
            finally:
                client.close()
        assert flows[0] == flows[1] == ["R3", "E28P01"]
    finally:
        loop_thread.run(server.stop())
    authenticated = [r for r in backend.of(session.id, "event") if r["event"] == "authenticated"]
    assert [r["method"] for r in authenticated] == ["password", "password"]


# -- the upstream side against a server that really authenticates ---------------------------


class TempCluster:
    def __init__(self, base: Path, port: int, bindir: Path, run_as: str | None) -> None:
        self.base = base
        self.port = port
        self.bindir = bindir
        self.run_as = run_as
        self.data = base / "data"
        self.passwords = {
            role: f"{role}-" + secrets.token_urlsafe(12)
            for role in ("signoff_scram", "signoff_md5", "signoff_clear", "signoff_tls")
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            user=self.run_as,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.base,
        )

    def admin_url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.base}&port={self.port}"

    def upstream(
        self, role: str, sslmode: str = "disable", password: str | None = None
    ) -> Upstream:
        return Upstream(
            "127.0.0.1",
            self.port,
            "signoff_auth",
            role,
            self.passwords[role] if password is None else password,
            sslmode,
        )


def _bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        path = Path(found.stdout.strip())
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    for initdb in sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True):
        if (initdb.parent / "pg_ctl").is_file():
            return initdb.parent
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def cluster() -> Iterator[TempCluster]:
    """A throwaway PostgreSQL cluster whose pg_hba makes every role really authenticate."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    run_as: str | None = None
    if os.geteuid() == 0:
        for candidate in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(candidate)
                run_as = candidate
                break
        if run_as is None:
            pytest.skip("running as root with no unprivileged user to run PostgreSQL as")
    base = Path(tempfile.mkdtemp(prefix="signoff-pgproxy-"))
    base.chmod(0o755)
    cluster = TempCluster(base, free_port(), bindir, run_as)
    cert, key = make_certificate(base)
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        for path in (base, cert, key):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    try:
        done = cluster.run(
            str(bindir / "initdb"),
            "-D",
            str(cluster.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        assert done.returncode == 0, done.stderr
        (cluster.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all signoff_md5 127.0.0.1/32 md5\n"
            "host all signoff_clear 127.0.0.1/32 password\n"
            "hostssl all signoff_tls 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all signoff_tls 127.0.0.1/32 reject\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        with (cluster.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {cluster.port}\n"
                f"unix_socket_directories = '{base}'\nssl = on\n"
                f"ssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n"
                "fsync = off\nmax_connections = 40\n"
            )
        done = cluster.run(
            str(bindir / "pg_ctl"), "-D", str(cluster.data), "-l", str(base / "log"), "-w", "start"
        )
        assert done.returncode == 0, done.stderr + (base / "log").read_text()
        with psycopg.connect(cluster.admin_url(), autocommit=True) as conn:
            for role, password in cluster.passwords.items():
                encryption = "md5" if role == "signoff_md5" else "scram-sha-256"
                conn.execute(sql.SQL("SET password_encryption = {}").format(encryption))
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(password)
                    )
                )
            conn.execute("CREATE DATABASE signoff_auth")
        yield cluster
    finally:
        cluster.run(str(bindir / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("role", ["signoff_scram", "signoff_md5", "signoff_clear"])
def test_upstream_authentication_methods(
    loop_thread: LoopThread, cluster: TempCluster, role: str
) -> None:
    async def probe() -> tuple[str, bool, int]:
        conn = await upstream_mod.connect(cluster.upstream(role))
        try:
            assert conn.parameters["server_version"]
            return conn.parameters.get("session_authorization", ""), conn.tls, conn.pid
        finally:
            await conn.close()

    user, tls, pid = loop_thread.run(probe())
    assert user == role and not tls and pid > 0


def test_upstream_scram_through_the_proxy(loop_thread: LoopThread, cluster: TempCluster) -> None:
    backend = AuditBackend(cluster.upstream("signoff_scram"))
    server = PgProxy(backend, ProxyConfig())
    loop_thread.run(server.start())
    received = bytearray()
    try:
        session, secret = backend.new_session("signoff_auth")
        with connect(server, session, secret, autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("signoff_scram",)
            assert conn.info.parameter_status("session_authorization") == "signoff_scram"
        client = RawClient(server.port)
        try:
            client.startup(session.id, "signoff_auth", secret)
            client.query("SELECT * FROM pg_stat_activity")
            client.query("SELECT 1/0")
        finally:
            client.close()
            received += client.received
        # a wrong upstream password: the client hears the gateway could not connect
        backend.default_upstream = cluster.upstream("signoff_scram", password="wrong")
        client = RawClient(server.port)
        try:
            messages = client.startup(session.id, "signoff_auth", secret)
            assert error_of(messages)["C"] == "08001"
        finally:
            client.close()
            received += client.received
    finally:
        loop_thread.run(server.stop())
    assert cluster.passwords["signoff_scram"].encode() not in received
    failures = [r for r in backend.of(session.id, "event") if r["event"] == "upstream-failed"]
    assert failures[0]["sqlstate"] == "28P01"


def test_upstream_wrong_password_never_in_the_error(
    loop_thread: LoopThread, cluster: TempCluster
) -> None:
    for role in ("signoff_scram", "signoff_md5", "signoff_clear"):
        target = cluster.upstream(role, password="Secret-" + secrets.token_hex(8))
        with pytest.raises(upstream_mod.UpstreamError) as failed:
            loop_thread.run(upstream_mod.connect(target))
        assert failed.value.sqlstate == "28P01"
        assert target.password is not None
        for text in (str(failed.value), repr(failed.value), repr(target)):
            assert target.password not in text
            assert cluster.passwords[role] not in text


def test_upstream_tls_with_channel_binding(loop_thread: LoopThread, cluster: TempCluster) -> None:
    async def probe() -> tuple[bool, list[tuple[Any, ...]]]:
        conn = await upstream_mod.connect(cluster.upstream("signoff_tls", "require"))
        try:
            conn.writer.write(
                wire.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )
            rows: list[tuple[Any, ...]] = []
            while True:
                kind, body = await wire.read_message(conn.reader)
                if kind == wire.DATA_ROW:
                    rows.append((body[6:].decode(),))
                if kind == wire.READY_FOR_QUERY:
                    return conn.tls, rows
        finally:
            await conn.close()

    tls, rows = loop_thread.run(probe())
    assert tls and rows == [("t",)]
    # hostnossl rejects the role: without TLS the server refuses it
    with pytest.raises(upstream_mod.UpstreamError) as refused:
        loop_thread.run(upstream_mod.connect(cluster.upstream("signoff_tls", "disable")))
    assert refused.value.sqlstate == "28000"


def test_upstream_require_fails_when_server_has_no_tls(
    loop_thread: LoopThread, upstream_db: tuple[Upstream, str]
) -> None:
    upstream = upstream_db[0]
    if upstream.host.startswith("/"):
        pytest.skip("the test server is reached over a unix socket")
    with psycopg.connect(upstream_db[1]) as conn:
        if conn.execute("SHOW ssl").fetchone() == ("on",):
            pytest.skip("the test server has TLS on")
    target = Upstream(upstream.host, upstream.port, upstream.dbname, upstream.user, None, "require")
    with pytest.raises(upstream_mod.UpstreamError, match="does not support TLS"):
        loop_thread.run(upstream_mod.connect(target))


def test_upstream_cancel(loop_thread: LoopThread, cluster: TempCluster) -> None:
    async def probe() -> str:
        conn = await upstream_mod.connect(cluster.upstream("signoff_scram"))
        try:
            conn.writer.write(wire.query("SELECT pg_sleep(30)"))
            await asyncio.sleep(0.3)
            await conn.cancel()
            while True:
                kind, body = await asyncio.wait_for(wire.read_message(conn.reader), 10)
                if kind == wire.ERROR_RESPONSE:
                    return wire.parse_error_fields(body)["C"]
        finally:
            await conn.close()

    assert loop_thread.run(probe()) == "57014"


# -- a TCP forwarder whose connections can be cut (an upstream that dies) ---------------------


class _Pipe(asyncio.Protocol):
    def __init__(self, forwarder: Forwarder, peer: asyncio.Transport | None = None) -> None:
        self.forwarder = forwarder
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        self.forwarder.transports.append(transport)
        if self.peer is None:
            transport.pause_reading()
            asyncio.get_running_loop().create_task(self._dial())

    async def _dial(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        back, _ = await loop.create_connection(
            lambda: _Pipe(self.forwarder, self.transport),
            self.forwarder.host,
            self.forwarder.target_port,
        )
        self.peer = back
        for data in self.early:
            back.write(data)
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.write(data)
        else:  # uvloop may deliver bytes read before pause_reading took effect
            self.early.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()


class Forwarder:
    def __init__(self, host: str, target_port: int) -> None:
        self.host = host
        self.target_port = target_port
        self.transports: list[asyncio.Transport] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    @classmethod
    async def start(cls, host: str, target_port: int) -> Forwarder:
        forwarder = cls(host, target_port)
        loop = asyncio.get_running_loop()
        forwarder.server = await loop.create_server(lambda: _Pipe(forwarder), "127.0.0.1", 0)
        forwarder.port = forwarder.server.sockets[0].getsockname()[1]
        return forwarder

    def cut(self) -> None:
        for transport in self.transports:
            transport.abort()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def test_the_client_is_told_the_servers_backend_pid(
    proxy: PgProxy, backend: AuditBackend, dbname: str
) -> None:
    session, secret = backend.new_session(dbname)
    with connect(proxy, session, secret, autocommit=True) as conn:
        (server_pid,) = conn.execute("SELECT pg_backend_pid()").fetchone()  # type: ignore[misc]
        assert conn.info.backend_pid == server_pid
        conn.execute("LISTEN pid_channel")
        conn.execute("NOTIFY pid_channel, 'x'")
        [note] = list(conn.notifies(timeout=5, stop_after=1))
        assert note.pid == server_pid  # NOTIFY carries the pid the client was given
