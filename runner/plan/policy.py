"""How findings become decisions: category defaults, per-rule overrides, inline allows.

The policy is data (from ``signoff.toml`` / ``[tool.signoff]``, read at the edge
by ``runner.config``); this module only applies it. Defaults fail closed:
destructive and unanalysable statements need a reviewer, and an inline allow
cannot waive them unless the configuration says so explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from runner.plan.model import Category, Decision, Finding, Severity
from runner.plan.rules.base import Rule

DEFAULT_DECISIONS: Mapping[Category, Decision] = {
    Category.DESTRUCTIVE: Decision.NEEDS_APPROVAL,
    Category.ACCESS_CONTROL: Decision.NEEDS_APPROVAL,
    # An escape hatch cannot be applied as written unless the configuration says
    # so (decisions.escape-hatch, or rules.SO6xx): an approval is not enough.
    Category.ESCAPE_HATCH: Decision.DENY,
    Category.UNANALYSABLE: Decision.NEEDS_APPROVAL,
    Category.LOCKING: Decision.WARN,
    Category.INCOMPATIBLE: Decision.WARN,
    Category.HYGIENE: Decision.ADVISORY,
}

# Categories an inline ``-- signoff: allow`` may downgrade by default. Waiving a
# destructive, access-control, escape-hatch or unanalysable finding is a
# reviewer's approval (or the configuration's), not an author's comment.
DEFAULT_INLINE_ALLOW = frozenset({Category.LOCKING, Category.INCOMPATIBLE, Category.HYGIENE})


@dataclass(frozen=True)
class Policy:
    decisions: Mapping[Category, Decision] = field(default_factory=lambda: dict(DEFAULT_DECISIONS))
    rule_decisions: Mapping[str, Decision] = field(default_factory=dict)
    inline_allow: frozenset[Category] = DEFAULT_INLINE_ALLOW
    # Threshold for exit status 1; None: only denied findings fail.
    fail_on: Severity | None = None
    # Assumed server_version_num when no database is given (None: assume the worst).
    server_version: int | None = None
    # Apply sets lock_timeout itself; hygiene rules speak up when this is off.
    apply_lock_timeout: bool = True
    target: str = "default"

    def decide(self, rule_id: str, category: Category, rule_default: Decision | None) -> Decision:
        if category is Category.HYGIENE:
            return Decision.ADVISORY  # hygiene never needs approval, never fails
        if rule_id in self.rule_decisions:
            return self.rule_decisions[rule_id]
        if rule_default is not None:
            return rule_default
        if category in self.decisions:
            return self.decisions[category]
        # A category the configuration does not mention: its default, or (one
        # unknown to the defaults too) a reviewer.
        return DEFAULT_DECISIONS.get(category, Decision.NEEDS_APPROVAL)

    def may_allow_inline(self, category: Category) -> bool:
        return category in self.inline_allow

    def finding(self, rule: Rule, message: str) -> Finding:
        return Finding(
            rule=rule.id,
            name=rule.name,
            category=rule.category,
            severity=rule.severity,
            decision=self.decide(rule.id, rule.category, rule.decision),
            message=message,
        )
