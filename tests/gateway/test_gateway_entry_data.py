"""The proxy's audit entry data, assembled as text on the hot path, is exactly
``canonical_json`` of the dict it stands for: the chain's hashes are taken over it,
and ``audit verify`` recomputes them from the decoded dict."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from runner.audit.entries import (
    outcome_data,
    outcome_data_json,
    statement_data,
    statement_data_json,
)
from runner.gateway.model import AuditDecision, Grant, Outcome, StatementDecision
from runner.plan.model import canonical_json

FP = "f" * 64
SHA = "a" * 64

DECISIONS = [
    StatementDecision("SELECT 1", SHA, FP, (), AuditDecision.ALLOWED),
    StatementDecision(
        "SELECT 'é\"\\\n\t' AS \"x\u2028y\", E'\\x00'", SHA, FP, (), AuditDecision.ALLOWED
    ),
    StatementDecision(
        "DROP TABLE patients",
        SHA,
        FP,
        (),
        AuditDecision.BLOCKED,
        reason='SO201 needs an approval: "/signoff approve"',
    ),
    StatementDecision(
        "ALTER TABLE t DROP COLUMN c",
        SHA,
        FP,
        ({"rule": "SO202", "message": "drops a column", "line": 1, "allowed": False},),
        AuditDecision.APPROVED,
        grant=Grant(
            id="g-1",
            database="ehr",
            fingerprint=FP,
            approver="alice",
            evidence_url="https://example.test/pr/1#c",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    ),
]


@pytest.mark.parametrize("decision", DECISIONS, ids=lambda d: d.decision.value + ":" + d.text[:12])
@pytest.mark.parametrize("database", ["ehr", 'odd "name" ü'])
def test_statement_data_text_is_canonical_json_of_the_dict(
    decision: StatementDecision, database: str
) -> None:
    text = statement_data_json(database, decision)
    assert text == canonical_json(statement_data(database, decision))
    assert json.loads(text)["text"] == decision.text


OUTCOMES = [
    Outcome(tag="SELECT 1", rows=1, duration_ms=0.123456),
    Outcome(tag="INSERT 0 5", rows=5, duration_ms=12),
    Outcome(sqlstate="42501", status="not-run"),
    Outcome(sqlstate="57014", status="failed", duration_ms=1e-07),
    Outcome(status="connection-lost", duration_ms=3600000.5),
    Outcome(tag="COPY 1000000", rows=1000000, duration_ms=0.0),
]


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: f"{o.tag}-{o.sqlstate}-{o.status}")
def test_outcome_data_text_is_canonical_json_of_the_dict(outcome: Outcome) -> None:
    text = outcome_data_json(outcome)
    assert text == canonical_json(outcome_data(outcome))
    assert outcome_data_json(outcome) == text  # again, from the cached tail
    decoded = json.loads(text)
    assert decoded["outcome"] == (outcome.sqlstate or outcome.tag)
    assert decoded["rows"] == outcome.rows
