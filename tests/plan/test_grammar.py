"""PostgreSQL's grammar against the analysis's reading (runner.plan.grammar, SO007)."""

from __future__ import annotations

import pytest
import sqlglot

from runner.plan import grammar
from runner.plan.analyse import view_of
from runner.plan.statements import split_statements


def _pg(sql: str) -> sqlglot.exp.Expression:
    return sqlglot.parse_one(sql, read="postgres")


def test_one_statement_where_postgresql_scans_two() -> None:
    reason = grammar.disagreement("SELECT 1; DROP TABLE t", _pg("SELECT 1"))
    assert reason == "PostgreSQL's scanner reads 2 statements where the analysis read one"


def test_a_cut_inside_a_token_postgresql_reads_whole() -> None:
    # What sqlglot's split makes of the smuggling text: the first piece ends inside
    # PostgreSQL's block comment.
    (first,) = split_statements("SELECT 1 FROM t WHERE 1 =|/*--*/ 1; DROP TABLE t")
    assert first.text == "SELECT 1 FROM t WHERE 1 =|/*"
    reason = grammar.disagreement(first.text, view_of(first).node)
    assert reason is not None and reason.startswith("PostgreSQL's scanner cannot read it")


@pytest.mark.parametrize(
    ("text", "tree", "expected"),
    [
        ("DELETE FROM t", "SELECT 1", "PostgreSQL reads it as DELETE, the analysis as SELECT"),
        ("CALL wipe()", "SELECT wipe()", "PostgreSQL reads it as CALL, the analysis as SELECT"),
        ("SELECT 1", "DROP TABLE t", "PostgreSQL reads it as SELECT, the analysis as DROP"),
    ],
)
def test_statement_kinds_must_agree(text: str, tree: str, expected: str) -> None:
    assert grammar.disagreement(text, _pg(tree)) == expected


def test_a_nested_write_the_tree_does_not_hold() -> None:
    text = "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"
    assert grammar.disagreement(text, _pg("SELECT * FROM d")) == (
        "PostgreSQL finds DELETE inside it, which the analysis did not read"
    )
    assert grammar.disagreement(text, _pg(text)) is None


@pytest.mark.parametrize(
    "text",
    [
        "SELECT $$ ; DROP TABLE t; $$",
        "SELECT 'a;b' AS \"c;d\" -- ; DROP TABLE t",
        "INSERT INTO t SELECT * FROM u ON CONFLICT (id) DO UPDATE SET a = excluded.a",
        "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE",
        "TABLE t",
        "VALUES (1), (2)",
        "SELECT 1 INTO TEMP x",
    ],
)
def test_agreeing_readings(text: str) -> None:
    (raw,) = split_statements(text)
    assert grammar.disagreement(raw.text, view_of(raw).node) is None


def test_a_syntax_error_to_postgresql_is_left_to_the_server() -> None:
    # One statement to the scanner that the parser rejects: the server refuses it too.
    assert grammar.disagreement("SELECT FROM WHERE", None) is None
    assert grammar.read("SELEC 1").node is None
