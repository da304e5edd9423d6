"""The test-only switch that takes the gateway's analysis out, so the guard alone is
tested: with ``SIGNOFF_TESTING=1`` *and* ``SIGNOFF_TEST_GUARD_ONLY=1`` in the
gateway's own environment, ``serve`` decides every statement without analysing it:
APPROVED when a grant for its fingerprint is there (used up, and marked for the
guard), ALLOWED otherwise (unmarked: the guard refuses any destructive effect).

It is never a way for a runner to turn the analysis off: a runner speaks to the
gateway over HTTP and the PostgreSQL port, and controls neither its environment nor
its configuration. ``SIGNOFF_TEST_GUARD_ONLY`` without ``SIGNOFF_TESTING=1`` stops
the gateway at start (a production gateway with it set is a mistake to say loudly),
and ``check-config`` prints it as an error the same way.
"""

from __future__ import annotations

import os

from runner.gateway.model import AuditDecision, Session, StatementDecision, utcnow
from runner.gateway.policy import GatewayPolicy, split

SWITCH = "SIGNOFF_TEST_GUARD_ONLY"
MARKER = "SIGNOFF_TESTING"


def _on(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def guard_only() -> bool:
    """Whether the analysis is switched off (both variables set)."""
    return _on(SWITCH) and _on(MARKER)


def switch_problem() -> str | None:
    """The one-line error when the switch is set without the test marker."""
    if _on(SWITCH) and not _on(MARKER):
        return (
            f"{SWITCH} is set: it switches the gateway's analysis off and is for the test "
            f"suite only (with {MARKER}=1); unset it"
        )
    return None


class GuardOnlyPolicy(GatewayPolicy):
    """Decides without analysis: a grant for the fingerprint, or nothing to say."""

    def decide(
        self, session: Session, sql: str, *, in_transaction: bool, lanes: bool
    ) -> list[StatementDecision]:
        now = utcnow()
        decisions = []
        for raw in split(sql):
            grant = self._consume_grant(session.database, raw.fingerprint, session.id, now)
            decisions.append(
                StatementDecision(
                    raw.text,
                    raw.sha256,
                    raw.fingerprint,
                    (),
                    AuditDecision.ALLOWED if grant is None else AuditDecision.APPROVED,
                    grant=grant,
                )
            )
        return decisions

    @classmethod
    def over(cls, policy: GatewayPolicy) -> GuardOnlyPolicy:
        """This policy in place of ``policy``, with the same grants and state."""
        made = cls.__new__(cls)
        made.__dict__.update(policy.__dict__)
        return made
