"""The engine skips a rule for statement kinds it declares it never reads.

That is a speed-up only: on every example of every rule, the labelled corpus
and the benchmark's generated migration, the findings with the dispatch must
equal the findings of running every rule on every statement.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from runner.plan.analyse import Analysis
from runner.plan.policy import Policy
from runner.plan.rules import catalogue
from runner.plan.statements import split_statements

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus" / "lint_examples.json"


def _texts() -> list[str]:
    texts = [e.sql for r in catalogue().values() for e in (*r.triggers, *r.passes)]
    if CORPUS.is_file():
        texts += [e["sql"] for e in json.loads(CORPUS.read_text())]
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import lint_speed

        texts.append(lint_speed.generate(2000, 7))
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return texts


def _findings(text: str, rules: list, version: int | None) -> list[tuple[int, str, str]]:
    analysis = Analysis(Policy(), server_version=version, rules=rules)
    return [
        (index, f.rule, f.message)
        for index, result in enumerate(analysis.analyse(split_statements(text)))
        for f in result.findings
    ]


def test_kind_dispatch_changes_no_finding() -> None:
    dispatched = list(catalogue().values())
    assert any(r.kinds is not None for r in dispatched)
    undispatched = [dataclasses.replace(r, kinds=None) for r in dispatched]
    compared = 0
    for text in _texts():
        for version in (None, 100000, 150000):
            fast = _findings(text, dispatched, version)
            assert fast == _findings(text, undispatched, version), text[:200]
            compared += len(fast)
    assert compared > 1000
