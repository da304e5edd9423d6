"""Every rule's own examples: SQL that must trigger it, and SQL that must not.

The examples live next to each rule's check (runner/plan/rules/*.py), squawk
style; this module runs them all, so a rule cannot land without both sides.
"""

from __future__ import annotations

import pytest

from runner.plan.build import ServerFacts, lint_text
from runner.plan.model import Category, Decision
from runner.plan.policy import Policy
from runner.plan.rules import catalogue
from runner.plan.rules.base import Example, Rule

RULES = catalogue()


def _lint(example: Example) -> set[str]:
    policy = Policy(
        server_version=example.server_version, apply_lock_timeout=example.apply_lock_timeout
    )
    facts = ServerFacts(columns=example.columns) if example.columns else None
    plan = lint_text(example.sql, "example.sql", policy=policy, facts=facts)
    return {finding.rule for _, finding in plan.findings}


def _cases(side: str) -> list[tuple[Rule, Example]]:
    return [
        pytest.param(rule, example, id=f"{rule.id}-{index}")
        for rule in RULES.values()
        for index, example in enumerate(getattr(rule, side))
    ]


@pytest.mark.parametrize(("rule", "example"), _cases("triggers"))
def test_rule_fires_on_its_triggers(rule: Rule, example: Example) -> None:
    assert rule.id in _lint(example), f"{rule.id} did not fire on:\n{example.sql}"


@pytest.mark.parametrize(("rule", "example"), _cases("passes"))
def test_rule_stays_quiet_on_its_passes(rule: Rule, example: Example) -> None:
    assert rule.id not in _lint(example), f"{rule.id} fired on:\n{example.sql}"


def test_catalogue_is_complete_and_documented() -> None:
    assert len(RULES) >= 35
    for rule in RULES.values():
        assert rule.triggers, f"{rule.id} has no triggering example"
        assert rule.passes, f"{rule.id} has no passing example"
        assert rule.rationale and rule.safer and rule.summary, rule.id
        assert rule.name == rule.name.lower() and " " not in rule.name, rule.id
    categories = {rule.category for rule in RULES.values()}
    assert categories == set(Category)


def test_hygiene_rules_never_change_the_outcome() -> None:
    policy = Policy()
    for rule in RULES.values():
        if rule.category is Category.HYGIENE:
            assert policy.decide(rule.id, rule.category, rule.decision) is Decision.ADVISORY
