"""Plan hash and canonical JSON, exactly as DESIGN.md defines them."""

from __future__ import annotations

import hashlib
import json

import pytest

from runner.plan.build import lint_text
from runner.plan.model import Plan, canonical_json
from runner.plan.policy import Policy

SQL = (
    "BEGIN;\nALTER TABLE patients ADD COLUMN bio text;\n"
    "ALTER TABLE patients DROP COLUMN ssn;\nCOMMIT;\n"
)


def test_plan_hash_is_sha256_of_the_canonical_contract_fields() -> None:
    plan = lint_text(SQL, "m.sql", policy=Policy(target="ehr"))
    expected = hashlib.sha256(
        json.dumps(
            {
                "target": "ehr",
                "revisions": [],
                "statements": [
                    hashlib.sha256(s.text.encode()).hexdigest() for s in plan.statements
                ],
                "ruleset": plan.ruleset,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    assert plan.hash == expected
    assert plan.short_hash == expected[:12]


def test_hash_is_stable_across_runs_and_changes_with_one_character() -> None:
    first = lint_text(SQL, "m.sql").hash
    assert lint_text(SQL, "m.sql").hash == first
    assert lint_text(SQL, "other-name.sql").hash == first  # where it came from is not content
    assert lint_text(SQL.replace("bio text", "bio tExt"), "m.sql").hash != first
    assert lint_text(SQL, "m.sql", policy=Policy(target="other")).hash != first


def test_json_round_trips_and_refuses_tampering() -> None:
    plan = lint_text(SQL, "m.sql")
    text = plan.dumps()
    loaded = Plan.loads(text)
    assert loaded == plan
    assert loaded.hash == plan.hash
    data = json.loads(text)
    data["statements"][1]["text"] = "ALTER TABLE patients ADD COLUMN bio varchar"
    with pytest.raises(ValueError, match="sha256"):
        Plan.from_json(data)
    data = json.loads(text)
    data["hash"] = "0" * 64
    with pytest.raises(ValueError, match="hash"):
        Plan.from_json(data)


def test_canonical_json_has_sorted_keys_and_no_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'


def test_every_statement_carries_transaction_and_kind() -> None:
    plan = lint_text(SQL + "CREATE INDEX CONCURRENTLY i ON patients (mrn);\n", "m.sql")
    kinds = [(s.kind, s.transaction) for s in plan.statements]
    assert kinds[0] == ("begin", 1)
    assert kinds[3] == ("commit", 1)
    assert kinds[4] == ("create_index", None)
