"""The caches behind ``GatewayPolicy.decide``: one call per text, the caching inside it.

Each test asks the policy alone (no proxy, no service), with grants in a real SQLite
store, and checks what a cached answer is (the very decision, the same as a fresh
analysis gives) and what is never cached (a statement that needs a grant, a text
under the literal guard, anything after an enum got a label).
"""

from __future__ import annotations

from collections.abc import Iterator
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
    StatementDecision,
    Verdict,
)
from runner.gateway.policy import GatewayPolicy, ServerFacts, SessionCaches, literal_shape
from runner.gateway.policy.analysis import effect_of
from runner.gateway.store import SqliteStore
from runner.plan.model import Category
from runner.plan.statements import split_statements

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ROLE = RoleConfig(
    "deployer",
    {**DEFAULT_ROLE_VERDICTS, Category.LOCKING: Verdict.ALLOW},
    {"SO104": Verdict.DENY},
)
SESSION = Session(
    "so_1", ScramVerifier.create("s"), Principal(iss="i", sub="s"), "ehr", "deployer", NOW, NOW
)
# A plain read (a SELECT, no write or lock keyword) that cannot be parsed: it needs
# approval (SO001), so only a grant lets it run.
NEEDS_A_GRANT = "SELECT 1 FROM visits WHERE"


class Harness:
    """A policy on a SQLite store, counting the grant lookups it makes."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.lookups: list[str] = []
        self.policy = self.new_policy()

    def new_policy(self) -> GatewayPolicy:
        return GatewayPolicy(
            {"deployer": ROLE},
            facts=lambda database: ServerFacts(150000, {}),
            consume_grant=self._consume,
            # What the policy stores for the C lane is what it is given, verbatim.
            entry_data=lambda database, d: f"data {database} {d.sha256}",
            entry_prefix=lambda database, d: f"prefix {database} {d.fingerprint}",
        )

    def _consume(
        self, database: str, fingerprint: str, session_id: str, at: datetime
    ) -> Grant | None:
        self.lookups.append(fingerprint)
        return self.store.consume_grant(database, fingerprint, session_id, at)

    def decide(
        self, sql: str, *, in_transaction: bool = False, lanes: bool = False
    ) -> list[StatementDecision]:
        """The decisions, each allowed one then taken as run, as the relay does when
        the server answers it (the session's state changes only then)."""
        decisions = self.policy.decide(SESSION, sql, in_transaction=in_transaction, lanes=lanes)
        for decision in decisions:
            effect = effect_of(decision)
            if effect is not None:
                effect.done(decision.text.split()[0].upper())
        return decisions

    def fresh(self, sql: str, *, in_transaction: bool = False) -> list[StatementDecision]:
        """What a new session's policy (nothing cached) decides on ``sql``."""
        return self.new_policy().decide(SESSION, sql, in_transaction=in_transaction, lanes=False)

    @property
    def caches(self) -> SessionCaches:
        caches = self.policy.caches(SESSION.id)
        assert caches is not None
        return caches


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    store = SqliteStore(str(tmp_path / "state.db"))
    try:
        yield Harness(store)
    finally:
        store.close()


def grant(store: SqliteStore, sql: str, grant_id: str) -> Grant:
    (raw,) = split_statements(sql)
    made = Grant(grant_id, "ehr", raw.fingerprint, "bob", None, NOW)
    store.add_grant(made)
    return made


def test_the_same_text_twice_is_one_cached_decision(harness: Harness) -> None:
    sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 1"
    assert harness.policy.caches(SESSION.id) is None  # nothing before the first text
    (first,) = harness.decide(sql)
    (second,) = harness.decide(sql)
    assert second is first  # the exact-text cache hands back the decision it kept
    assert first == harness.fresh(sql)[0]
    assert first.decision is AuditDecision.ALLOWED
    assert harness.caches.allowed_texts == {(sql, False): first}
    # In a transaction the findings may differ: its own key, its own decision.
    (in_transaction,) = harness.decide(sql, in_transaction=True)
    assert in_transaction is not first
    assert in_transaction == harness.fresh(sql, in_transaction=True)[0]
    # Another literal value: the cached mask answers it, as a fresh analysis would.
    other = "SELECT abalance FROM pgbench_accounts WHERE aid = 2"
    (by_shape,) = harness.decide(other)
    assert by_shape == harness.fresh(other)[0]
    assert by_shape.sha256 != first.sha256 and by_shape.fingerprint == first.fingerprint
    assert (other, False) not in harness.caches.allowed_texts  # answered by its mask
    assert harness.lookups == []  # an allowed read asks for no grant


def test_a_grant_is_never_served_from_the_cache(harness: Harness) -> None:
    grants = [
        grant(harness.store, NEEDS_A_GRANT, "gr_1"),
        grant(harness.store, NEEDS_A_GRANT, "gr_2"),
    ]
    decided = [harness.decide(NEEDS_A_GRANT, lanes=True)[0] for _ in range(3)]
    # Each run asked the store and used up one grant; the third found none left.
    assert [d.decision for d in decided] == [
        AuditDecision.APPROVED,
        AuditDecision.APPROVED,
        AuditDecision.BLOCKED,
    ]
    assert [d.grant.id if d.grant else None for d in decided] == [g.id for g in grants] + [None]
    assert "needs approval (SO001" in (decided[2].reason or "")
    assert harness.lookups == [grants[0].fingerprint] * 3
    caches = harness.caches
    assert caches.allowed_texts == {} and caches.allowed_shapes == {}
    assert caches.allowed_reads == {}
    assert caches.lane_shapes == {} and caches.lane_texts == {}


def test_a_statement_that_needs_approval_is_looked_up_every_time(harness: Harness) -> None:
    for _ in range(2):
        (drop,) = harness.decide("DROP TABLE visits")
        assert drop.decision is AuditDecision.BLOCKED
    assert len(harness.lookups) == 2
    assert harness.caches.allowed_texts == {} and harness.caches.allowed_reads == {}


def test_a_text_under_the_literal_guard_is_never_cached(harness: Harness) -> None:
    sql = "SELECT set_config('application_name', 'x', false)"
    (first,) = harness.decide(sql, lanes=True)
    (second,) = harness.decide(sql, lanes=True)
    assert first.decision is AuditDecision.ALLOWED
    assert second == first and second is not first  # analysed both times
    caches = harness.caches
    assert caches.allowed_texts == {} and caches.allowed_shapes == {}
    assert caches.lane_shapes == {} and caches.lane_texts == {}


def test_the_lane_caches_are_filled_with_lanes_outside_a_transaction_only(
    harness: Harness,
) -> None:
    shapes, texts = harness.policy.lane_caches(SESSION)
    harness.decide("SELECT mrn FROM patients WHERE id = 1", lanes=False)
    harness.decide("SELECT name FROM wards WHERE id = 1", in_transaction=True, lanes=True)
    assert shapes == {} and texts == {}
    sql = "SELECT bed FROM rooms WHERE id = 7"
    (decision,) = harness.decide(sql, lanes=True)
    assert texts == {sql: (f"data ehr {decision.sha256}", decision)}
    mask, _, made_in_c, _ = literal_shape(sql)
    # The C lane serves only the masks its own scanner makes.
    assert shapes == ({mask: f"prefix ehr {decision.fingerprint}"} if made_in_c else {})
    # The lane holds these very dicts for the session's life.
    again_shapes, again_texts = harness.policy.lane_caches(SESSION)
    assert again_shapes is shapes and again_texts is texts


def test_an_enum_label_ends_the_cached_verdicts_on_reads(harness: Harness) -> None:
    sql = "SELECT mrn FROM patients WHERE id = 1"
    (first,) = harness.decide(sql, lanes=True)
    shapes, texts = harness.policy.lane_caches(SESSION)
    assert texts
    harness.decide("BEGIN")
    harness.decide("ALTER TYPE mood ADD VALUE 'tired'", in_transaction=True)
    # (COMMIT: a ROLLBACK would take the label back, and the verdicts would hold again.)
    harness.decide("COMMIT", in_transaction=True)
    assert shapes == {} and texts == {}  # emptied in place: the lane sees it
    (again,) = harness.decide(sql, lanes=True)
    assert again == first and again is not first  # analysed again, not served
    other = "SELECT mrn FROM patients WHERE id = 2"
    (by_analysis,) = harness.decide(other, lanes=True)
    assert by_analysis.fingerprint == first.fingerprint
    assert shapes == {} and texts == {}  # and never filled again
