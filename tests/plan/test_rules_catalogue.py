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
    facts = (
        ServerFacts(columns=example.columns, functions=example.functions)
        if example.columns or example.functions is not None
        else None
    )
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


def _consults_version(rule: Rule) -> bool:
    import inspect

    source = inspect.getsource(rule.check)
    return any(w in source for w in ("version_below", "version_between", "server_version <"))


def test_rules_whose_check_reads_the_version_have_examples_on_several_versions() -> None:
    dependent = [r for r in RULES.values() if _consults_version(r)]
    assert {"SO203", "SO206", "SO208", "SO219", "SO225"} <= {r.id for r in dependent}
    for rule in dependent:
        assert rule.version_dependent, f"{rule.id}: its examples all assume one server version"


@pytest.mark.parametrize("rule_id", ["SO225", "SO208", "SO219"])
def test_explanation_states_the_version_of_each_example(rule_id: str) -> None:
    from runner.plan.render import rule_catalogue

    rule = RULES[rule_id]
    text = rule_catalogue([rule], "text", explain=True)
    flags, _, quiet = text.partition("Does not flag, for example:")
    for side, examples in ((flags, rule.triggers[:4]), (quiet, rule.passes[:4])):
        for example in examples:
            shown = f"  on {example.version_text}:\n    " + example.sql.replace("\n", "\n    ")
            assert shown in side, f"{rule_id}: {example.sql!r} shown without its version"
    markdown = rule_catalogue([rule], "markdown", explain=True)
    assert f"On {rule.triggers[0].version_text}:" in markdown and "```sql" in markdown
    # SO225's point: the same SQL on both sides, told apart by the version.
    if rule_id == "SO225":
        same = {e.sql for e in rule.triggers} & {e.sql for e in rule.passes}
        assert same, "SO225 should show one attach on both sides"
        assert "on PostgreSQL 11.0:" in flags and "on PostgreSQL 15.0:" in quiet


def test_rules_json_examples_hold_at_the_version_they_state() -> None:
    import json

    from runner.plan.render import rule_catalogue

    data = json.loads(rule_catalogue(list(RULES.values()), "json", explain=False))
    assert len(data) == len(RULES)
    for entry in data:
        assert entry["version_dependent"] is RULES[entry["id"]].version_dependent
        for side, expected in (("flags", True), ("does_not_flag", False)):
            assert entry["examples"][side], (entry["id"], side)
            for shown in entry["examples"][side]:
                example = Example(shown["sql"], server_version=shown["server_version_num"])
                matching = [
                    e
                    for e in getattr(RULES[entry["id"]], "triggers" if expected else "passes")
                    if e.sql == example.sql and e.server_version == example.server_version
                ]
                assert matching, (entry["id"], shown)
                found = entry["id"] in _lint(matching[0])
                assert found is expected, f"{entry['id']} {side} on {shown['server_version']}"
