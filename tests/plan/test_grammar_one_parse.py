"""PostgreSQL's parser is called once per statement: a text with no semicolon goes to
the parser alone (the scanner only when that does not read one statement), and the
function-call finder and the grammar cross-check share the parse of a text."""

from __future__ import annotations

from typing import Any

import pytest
from pglast import parser as pg_parser

from runner.plan import functions, grammar

# (text, statements, scanner error?, top node, nested writes): what the two-call
# reading (scanner split, then parse) gave before the one-call path was added.
READINGS = [
    ("SELECT 1 -- c", 1, False, "SelectStmt", set()),
    ("-- only a comment", 0, False, None, set()),
    ("SELECT 'unterminated", 0, True, None, set()),
    ("SELEC 1", 0, False, None, set()),
    ("SELECT $$a;b$$", 1, False, "SelectStmt", set()),
    ("/* x */ DELETE FROM t", 1, False, "DeleteStmt", set()),
    (
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        1,
        False,
        "SelectStmt",
        {"DeleteStmt"},
    ),
    ("SELECT 1; SELECT 2", 2, False, None, set()),
    ("SELECT 1 =|/*--*/ 1", 1, False, "SelectStmt", set()),
]


@pytest.mark.parametrize(("text", "statements", "scanner_error", "node", "nested"), READINGS)
def test_reading_is_the_two_call_one(
    text: str, statements: int, scanner_error: bool, node: str | None, nested: set[str]
) -> None:
    reading = grammar._read(text)
    assert reading.statements == statements
    assert (reading.scanner_error is not None) is scanner_error
    assert reading.node == node
    assert set(reading.nested_writes) == nested


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"parse": 0, "split": 0}
    parse, split = pg_parser.parse_sql_json, pg_parser.split

    def counted_parse(text: str) -> str:
        counts["parse"] += 1
        return parse(text)

    def counted_split(*args: Any, **kwargs: Any) -> Any:
        counts["split"] += 1
        return split(*args, **kwargs)

    monkeypatch.setattr(pg_parser, "parse_sql_json", counted_parse)
    monkeypatch.setattr(pg_parser, "split", counted_split)
    return counts


def test_a_statement_without_semicolon_is_parsed_once_and_not_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = _counting(monkeypatch)
    text = "UPDATE patients SET ward = ward || 'x' WHERE id = 41"
    assert grammar._read(text).node == "UpdateStmt"
    assert counts == {"parse": 1, "split": 0}


def test_calls_in_and_the_cross_check_share_one_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = _counting(monkeypatch)
    text = "SELECT audit_touch(id) FROM patients WHERE id = 40"
    calls = functions.calls_in(text)
    assert not isinstance(calls, str) and [c.parts[-1] for c in calls] == ["audit_touch"]
    assert grammar.disagreement(text, None) is None
    assert counts["parse"] == 1
