"""Per-statement decisions at the gateway: the planner's analysis, a role, grants."""

from __future__ import annotations

from datetime import UTC, datetime

from runner.gateway.config import DEFAULT_ROLE_VERDICTS, RoleConfig
from runner.gateway.model import AuditDecision, Grant, Verdict
from runner.gateway.policy import SessionAnalysis, decide_statement, plain_read
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
