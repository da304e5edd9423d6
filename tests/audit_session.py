"""A real gateway session to build audit bundles from: a plan submitted over HTTP
for review on the loopback GitHub (tests/ci_flow_harness.py), approved there by a
reviewer's comment and verified by the gateway (which records the grant), the
plan's statements run through the proxy, then the gateway's attestation
(runner.audit.attestation) of it all."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from ci_flow_harness import HEAD, REPO, Flow
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runner.audit.attestation import gateway_attestation
from runner.audit.chain import AuditEntry, EntryKind
from runner.plan.build import SqlSource, build_plan
from runner.plan.model import Plan
from runner.plan.policy import Policy

PLAN_SQL = """\
CREATE TABLE audit_demo (id bigint PRIMARY KEY, note text);
INSERT INTO audit_demo VALUES (1, 'one'), (2, 'two');
DROP TABLE visits_old;
"""
APPROVER = "bob"  # write access, not the PR author (carol) nor the actor (alice)


@dataclass
class RecordedSession:
    session: dict[str, Any]
    plan: Plan
    entries: list[AuditEntry]
    envelope: dict[str, Any]
    key: Ed25519PrivateKey
    store: Any

    @property
    def session_id(self) -> str:
        return str(self.session["session_id"])


def record_session(
    flow: Flow,
    *,
    key: Ed25519PrivateKey | None = None,
    sql: str = PLAN_SQL,
    extra: tuple[str, ...] = (),
) -> RecordedSession:
    """One session planning ``sql`` (one destructive statement in it), approved and
    run; ``extra`` statements (outside the plan) run after the plan's."""
    key = key or Ed25519PrivateKey.generate()
    gateway = flow.gateway
    service = gateway.running.running.service
    assert service is not None
    session = gateway.session()
    plan = build_plan([SqlSource("demo.sql", sql)], policy=Policy(target="ehr"))
    assert len([s for s in plan.statements if s.needs_approval]) == 1, "the DROP needs approval"
    auth = {"Authorization": f"Bearer {session['secret']}"}
    base = f"{gateway.http}/v1/sessions/{session['session_id']}"
    review = {"platform": "github", "repository": REPO, "number": 7, "head_sha": HEAD}
    response = httpx.post(
        f"{base}/plans", json={"plan": plan.to_json(), "review": review}, headers=auth, timeout=30
    )
    assert response.status_code == 201, response.text
    flow.approve(APPROVER, plan.hash)
    response = httpx.get(f"{base}/plans/{plan.hash}", headers=auth, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "approved", response.text
    with gateway.connect(session) as conn:
        for statement in plan.statements:
            conn.execute(statement.text)
        for text in extra:
            conn.execute(text)
    store = service.store
    # Outcome entries are written after the result is relayed (fire-and-forget): wait
    # for each, as the HTTP endpoint does by running after them on the loop.
    want = len(plan.statements) + len(extra)
    deadline = time.monotonic() + 10
    while (
        sum(e.kind is EntryKind.OUTCOME for e in store.entries(session_id=session["session_id"]))
        < want
    ):
        assert time.monotonic() < deadline, "the outcomes were never recorded"
        time.sleep(0.02)
    # The attestation first, then the entries: the CI job's order (entries recorded
    # in between, the connection's close say, are beyond what was attested).
    envelope = gateway_attestation(store, session["session_id"], key)
    entries = store.entries(session_id=session["session_id"])
    return RecordedSession(session, plan, entries, envelope, key, store)


def synthetic_bundle(key: Ed25519PrivateKey, *, note: str = "one") -> bytes:
    """A signed bundle from entries made with runner.audit's builders (no gateway):
    for the storage tests, which need real bundles, many and fast."""
    from runner.audit.attestation import attestation_statement, session_files, sign_statement
    from runner.audit.bundle import build_bundle
    from runner.audit.chain import GENESIS_HASH, NewEntry, build_entries
    from runner.audit.entries import event_entry

    plan = build_plan(
        [SqlSource("n.sql", f"INSERT INTO notes VALUES ('{note}');")], policy=Policy(target="ehr")
    )
    statement = plan.statements[0]
    principal = {"iss": "https://token.example", "sub": "repo:acme/ehr-api", "actor": "alice"}
    sid = "so_" + "ab" * 12
    made = build_entries(
        [
            event_entry(sid, "session-created", principal=principal, claims=principal),
            event_entry(sid, "plan-submitted", plan_hash=plan.hash, plan=plan.to_json()),
            NewEntry(
                EntryKind.STATEMENT,
                sid,
                {
                    "database": "ehr",
                    "text": statement.text,
                    "sha256": statement.sha256,
                    "fingerprint": statement.fingerprint,
                    "findings": [],
                    "decision": "allowed",
                    "reason": None,
                    "grant": None,
                    "masked_columns": [],
                },
            ),
        ],
        0,
        GENESIS_HASH,
    )
    statement_seq = made[-1][0].seq
    made += build_entries(
        [
            NewEntry(
                EntryKind.OUTCOME,
                sid,
                {
                    "outcome": "INSERT 0 1",
                    "tag": "INSERT 0 1",
                    "sqlstate": None,
                    "rows": 1,
                    "duration_ms": 0.5,
                    "status": "completed",
                },
                ref=statement_seq,
            )
        ],
        made[-1][0].seq,
        made[-1][0].hash,
    )
    entries = [entry for entry, _ in made]
    envelope = sign_statement(attestation_statement(session_files(entries)), key)
    return build_bundle(entries=entries, envelope=envelope).to_bytes()
