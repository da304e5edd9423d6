"""A rule's ``kinds=`` may hold patterns (``drop*``): the engine then runs it on every
kind the pattern matches, and only on those (the findings themselves are compared
with and without dispatch in test_rule_dispatch)."""

from __future__ import annotations

import dataclasses

from runner.plan.analyse import Analysis
from runner.plan.policy import Policy
from runner.plan.rules import catalogue
from runner.plan.statements import split_statements


def test_patterns_match_by_prefix_and_substring() -> None:
    cascade = catalogue()["SO110"]
    assert cascade.kinds is not None and "drop*" in cascade.kinds
    for kind in (None, "truncate", "drop", "drop_table", "alter_table_add_column"):
        assert cascade.reads_kind(kind), kind
    for kind in ("select", "alter_type_add_value", "create_table", "xdrop"):
        assert not cascade.reads_kind(kind), kind
    rename = catalogue()["SO301"]
    assert rename.reads_kind("alter_view_rename") and not rename.reads_kind(None)


def test_a_pattern_dispatched_rule_still_fires_on_every_kind_it_matches() -> None:
    drop_table = catalogue()["SO101"]
    analysis = Analysis(Policy(), server_version=150000, rules=[drop_table])
    sql = "DROP TABLE patients; DROP TABLE IF EXISTS visits CASCADE; SELECT 1"
    found = [
        [f.rule for f in result.findings] for result in analysis.analyse(split_statements(sql))
    ]
    assert found == [["SO101"], ["SO101"], []]
    never = dataclasses.replace(drop_table, kinds=frozenset({"select"}))
    analysis = Analysis(Policy(), server_version=150000, rules=[never])
    assert not any(r.findings for r in analysis.analyse(split_statements(sql)))
