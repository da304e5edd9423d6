"""Per-statement decisions at the gateway: the planner's analysis, a role, grants."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.gateway.config import DEFAULT_ROLE_VERDICTS, RoleConfig
from runner.gateway.model import (
    AuditDecision,
    Grant,
    Principal,
    ScramVerifier,
    Session,
    Verdict,
)
from runner.gateway.policy import SessionAnalysis, decide_statement, plain_read
from runner.gateway.service import GatewayService
from runner.gateway.store import SqliteStore
from runner.plan.model import Category
from runner.plan.statements import split_statements

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ROLE = RoleConfig(
    "deployer",
    {**DEFAULT_ROLE_VERDICTS, Category.LOCKING: Verdict.ALLOW},
    {"SO104": Verdict.DENY},
)


def decide(sql: str, grants: list[Grant] | None = None, *, in_transaction: bool = False):  # type: ignore[no-untyped-def]
    analysis = SessionAnalysis.start(server_version=150000, columns={})
    pool = list(grants or [])

    def consume(database: str, fingerprint: str, session: str, at: datetime) -> Grant | None:
        for grant in pool:
            if grant.fingerprint == fingerprint and grant.database == database:
                pool.remove(grant)
                return grant
        return None

    out = []
    for raw in split_statements(sql):
        _, findings = analysis.findings(raw, in_transaction=in_transaction)
        out.append(
            decide_statement(
                raw,
                findings,
                role=ROLE,
                database="ehr",
                session_id="so_1",
                now=NOW,
                consume_grant=consume,
            )
        )
    return out


def grant_for(sql: str) -> Grant:
    (raw,) = split_statements(sql)
    return Grant("gr_1", "ehr", raw.fingerprint, "bob", None, NOW)


def test_allowed_needs_approval_and_denied() -> None:
    allowed, needs, denied = decide(
        "CREATE INDEX i ON patients (mrn); DROP TABLE visits; DROP DATABASE ehr"
    )
    assert allowed.decision is AuditDecision.ALLOWED
    assert needs.decision is AuditDecision.BLOCKED and "SO101" in (needs.reason or "")
    assert "signoff gateway grant" in (needs.reason or "")
    assert denied.decision is AuditDecision.BLOCKED and "denied by role" in (denied.reason or "")


def test_a_grant_allows_its_statement_once() -> None:
    grant = grant_for("DROP TABLE visits")
    first, second = decide("DROP TABLE visits; DROP TABLE visits", [grant])
    assert first.decision is AuditDecision.APPROVED and first.grant == grant
    assert second.decision is AuditDecision.BLOCKED


def test_a_grant_cannot_be_used_for_a_denied_statement() -> None:
    (denied,) = decide("DROP DATABASE ehr", [grant_for("DROP DATABASE ehr")])
    assert denied.decision is AuditDecision.BLOCKED


def test_session_state_follows_the_planner() -> None:
    # A table the session created is new: dropping it loses nothing, as in the plan.
    _, dropped = decide("CREATE TABLE scratch (id int); DROP TABLE scratch")
    assert dropped.decision is AuditDecision.ALLOWED


def test_plain_reads_only() -> None:
    def first(sql: str) -> bool:
        return plain_read(split_statements(sql)[0])

    assert first("SELECT abalance FROM pgbench_accounts WHERE aid = 7")
    assert not first("WITH d AS (DELETE FROM t WHERE 1 = 1 RETURNING *) SELECT * FROM d")
    assert not first("SELECT * INTO copy FROM t")
    assert not first("SELECT * FROM t FOR UPDATE")
    assert not first("UPDATE t SET a = 1")


def test_read_cache_gives_what_a_full_analysis_gives() -> None:
    cached = SessionAnalysis.start(server_version=150000, columns={})
    statements = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 99",
        "SELECT 'x', 1, $1 FROM t",
        "SELECT 'y', 2, $2 FROM t",
        "WITH d AS (DELETE FROM t WHERE 1 = 1 RETURNING *) SELECT * FROM d",
        "WITH d AS (DELETE FROM t WHERE 1 = 2 RETURNING *) SELECT * FROM d",
    ]
    for sql in statements:
        (raw,) = split_statements(sql)
        fresh = SessionAnalysis.start(server_version=150000, columns={})
        assert cached.findings(raw, in_transaction=False) == fresh.findings(
            raw, in_transaction=False
        ), sql
    assert len(cached.read_cache) == 2  # the two SELECT shapes, nothing else


def _service(tmp_path: Path) -> tuple[GatewayService, SqliteStore, Session]:
    """A GatewayService on a SQLite store (no catalog read), and a session on it."""
    from runner.gateway.config import parse_gateway_config
    from runner.gateway.policy import ServerFacts

    config = parse_gateway_config(
        {
            "issuers": [
                {"name": "github", "issuer": "https://token.actions.githubusercontent.com"}
            ],
            "databases": [{"name": "ehr", "host": "db.internal", "dbname": "ehr", "user": "gw"}],
            "access": [
                {"database": "ehr", "role": "deployer", "issuer": "github", "claims": {"ref": "x"}}
            ],
            "roles": {"deployer": {"locking": "allow", "rules": {"SO104": "deny"}}},
        }
    )
    store = SqliteStore(str(tmp_path / "state.db"))
    service = GatewayService(config, store)
    service._facts["ehr"] = ServerFacts(150000, {})  # no catalog read in a unit test
    verifier = ScramVerifier.create("s")
    session = Session("so_1", verifier, Principal(iss="i", sub="s"), "ehr", "deployer", NOW, NOW)
    return service, store, session


@pytest.mark.parametrize("native", [True, False], ids=["speedups", "pure-python"])
def test_service_caches_only_allowed_plain_reads(
    tmp_path: Path, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached ALLOW on a plain read gives exactly the uncached decision; a
    statement that needs approval is decided (and its grant looked up) every time.
    The same with the literal masks made in C (runner._speedups) and without."""
    from runner._native.loader import native as built

    if native and built is None:
        pytest.skip("runner._speedups is not built here")
    if not native:  # the literal masks from sqlglot's tokens, as without the C extension
        monkeypatch.setattr("runner.gateway.policy.caches._native", None)
    service, store, session = _service(tmp_path)
    lookups: list[str] = []
    real_consume = store.consume_grant

    def consume(database: str, fingerprint: str, session_id: str, at: datetime) -> Grant | None:
        lookups.append(fingerprint)
        return real_consume(database, fingerprint, session_id, at)

    store.consume_grant = consume  # type: ignore[method-assign]
    try:
        reads = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 2",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 2",
        ]
        for in_transaction in (False, True, False):
            for sql in reads:
                (got,) = service.decide(session, sql, in_transaction=in_transaction)
                (want,) = decide(sql, in_transaction=in_transaction)
                assert got == want, sql
        caches = service.policy.caches("so_1")
        assert caches is not None
        assert len(caches.allowed_reads) == 2  # one shape, in and out of a transaction
        # The first text of the shape by its exact text too (in and out of a
        # transaction; the second is decided from the shape alone), and a
        # repeated text gets the very decision a full analysis gives.
        assert set(caches.allowed_texts) == {(reads[0], t) for t in (False, True)}
        (again,) = service.decide(session, reads[0], in_transaction=True)
        assert again == decide(reads[0], in_transaction=True)[0]
        # One literal mask (in and out of a transaction); another literal value
        # (or leading space and a semicolon: another mask, the same fingerprint)
        # decided from it gives what a full analysis gives.
        assert set(caches.allowed_shapes) == {
            ("SELECT abalance FROM pgbench_accounts WHERE aid = ?", native, t)
            for t in (False, True)
        }
        for sql in (
            "SELECT abalance FROM pgbench_accounts WHERE aid = 77",
            "SELECT abalance FROM pgbench_accounts WHERE aid = '77'",
            "  SELECT abalance FROM pgbench_accounts WHERE aid = 78;",
            "-- signoff: allow SO302 because test\nSELECT abalance FROM pgbench_accounts "
            "WHERE aid = 79",
        ):
            for in_transaction in (True, False):
                (got,) = service.decide(session, sql, in_transaction=in_transaction)
                assert got == decide(sql, in_transaction=in_transaction)[0], sql
        # + the "  ...;" mask; a statement with a comment is never cached (a
        # directive in it changes the findings, not the fingerprint).
        assert len(caches.allowed_shapes) == 4
        two = "SELECT 1 FROM t; SELECT 2 FROM t"
        assert len(service.decide(session, two, in_transaction=False)) == 2
        assert (two, False) not in caches.allowed_texts  # only a single statement's text
        assert not any("SELECT ? FROM t;" in mask for mask, _, _ in caches.allowed_shapes)
        for _ in range(2):
            (drop,) = service.decide(session, "DROP TABLE visits", in_transaction=False)
            assert drop.decision is AuditDecision.BLOCKED
        assert len(lookups) == 2  # looked up each time: never cached
        assert len(caches.allowed_reads) == 3  # + the shape of "SELECT n FROM t"
    finally:
        service.close()
        store.close()


REFUSED_SCS = [
    "SET standard_conforming_strings = off",
    "set STANDARD_CONFORMING_STRINGS to 'off'",
    'SET SESSION "standard_conforming_strings" = false',
    'SET U&"\\0073tandard_conforming_strings" = off',
    "ALTER ROLE app SET standard_conforming_strings = off",
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    "SELECT set_config('standard_' || 'conforming_strings', 'off', false)",
    "SELECT set_config(E'\\x73tandard_conforming_strings', 'off', false)",
    "SELECT set_config((SELECT name FROM pg_settings LIMIT 1), 'off', false)",
    "SELECT 1; SET standard_conforming_strings = off; SELECT 'a\\''; DROP TABLE t; --'",
]


@pytest.mark.parametrize("sql", REFUSED_SCS, ids=range(len(REFUSED_SCS)))
def test_nothing_that_could_turn_standard_conforming_strings_off_is_allowed(
    tmp_path: Path, sql: str
) -> None:
    service, store, session = _service(tmp_path)
    try:
        # An allowed call of the same shape first: its cached verdict must not apply.
        (ok,) = service.decide(
            session, "SELECT set_config('application_name', 'x', false)", in_transaction=False
        )
        assert ok.decision is AuditDecision.ALLOWED
        decisions = service.decide(session, sql, in_transaction=False)
        refused = [
            d
            for d in decisions
            if d.decision is AuditDecision.BLOCKED and "conforming" in (d.reason or "")
        ]
        assert refused, [(d.text, d.decision, d.reason) for d in decisions]
    finally:
        service.close()
        store.close()


def test_reading_standard_conforming_strings_and_other_settings_is_allowed(
    tmp_path: Path,
) -> None:
    service, store, session = _service(tmp_path)
    try:
        for sql in (
            "SHOW standard_conforming_strings",
            "SELECT set_config('application_name', 'x', false)",
            "SET application_name = 'u&x'",
        ):
            (decision,) = service.decide(session, sql, in_transaction=False)
            assert decision.decision is AuditDecision.ALLOWED, (sql, decision.reason)
    finally:
        service.close()
        store.close()
