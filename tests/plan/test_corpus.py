"""The labelled corpus: every example judged the way its label says.

../shared/corpus/lint_examples.json holds SQL snippets labelled ``destructive``,
``locking``, ``incompatible`` or ``safe`` (PostgreSQL 15, populated tables
unless the snippet creates them). Each is linted as one plan and checked:

* destructive: some finding of category destructive;
* locking: some locking finding, and nothing destructive;
* incompatible: some incompatible finding, and nothing destructive;
* safe: nothing but advisory findings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.plan.build import ServerFacts, lint_text
from runner.plan.model import Category, Decision, Finding
from runner.plan.policy import Policy

CORPUS = Path(__file__).parents[3] / "shared" / "corpus" / "lint_examples.json"

# Column types the labels take for granted (what the catalog of the labelled
# database would say): varchar(50) -> varchar(5) narrows, varchar(50) -> text
# does not rewrite, timestamp -> timestamptz rewrites.
FACTS = ServerFacts(
    columns={
        "users": {"nickname": "character varying(50)"},
        "logs": {"created_at": "timestamp without time zone"},
    }
)
LABELS = {"destructive", "locking", "incompatible", "safe"}


def _examples() -> list[Any]:
    if not CORPUS.is_file():
        return [pytest.param(None, id="corpus-absent", marks=pytest.mark.skip(f"{CORPUS} absent"))]
    examples = json.loads(CORPUS.read_text(encoding="utf-8"))
    return [pytest.param(example, id=example["id"]) for example in examples]


def _findings(sql: str) -> list[Finding]:
    plan = lint_text(sql, "corpus.sql", policy=Policy(server_version=150000), facts=FACTS)
    return [finding for _, finding in plan.findings]


def _show(findings: list[Finding]) -> str:
    lines = [f"  {f.rule} {f.category} {f.decision}: {f.message}" for f in findings]
    return "\n".join(lines) or "  (no findings)"


@pytest.mark.parametrize("example", _examples())
def test_corpus_example_is_judged_as_labelled(example: dict[str, Any]) -> None:
    label = example["expected_category"]
    assert label in LABELS, f"unknown label {label!r}"
    findings = _findings(example["sql"])
    categories = {f.category for f in findings}
    context = f"{example['id']} ({label}):\n{example['sql']}\nfindings:\n{_show(findings)}"
    if label == "destructive":
        assert Category.DESTRUCTIVE in categories, context
    elif label == "locking":
        assert Category.LOCKING in categories, context
        assert Category.DESTRUCTIVE not in categories, context
    elif label == "incompatible":
        assert Category.INCOMPATIBLE in categories, context
        assert Category.DESTRUCTIVE not in categories, context
    else:
        assert all(f.decision is Decision.ADVISORY for f in findings), context
