"""The splitter keeps original text byte for byte; the fingerprint normalises literals only."""

from __future__ import annotations

from runner.plan.statements import split_statements


def test_split_keeps_original_text_lines_and_leading_comments() -> None:
    sql = (
        "-- Running upgrade a -> b\n\nBEGIN;\n"
        "/* note */ ALTER TABLE patients\n   ADD COLUMN bio text;\n"
        "SELECT 'a;b', $x$ c; d $x$;\n"
        "COMMIT;\n-- trailing comment only\n"
    )
    statements = split_statements(sql)
    assert [s.text for s in statements] == [
        "-- Running upgrade a -> b\n\nBEGIN",
        "/* note */ ALTER TABLE patients\n   ADD COLUMN bio text",
        "SELECT 'a;b', $x$ c; d $x$",
        "COMMIT",
    ]
    assert [(s.line, s.end_line) for s in statements] == [(1, 3), (4, 5), (6, 6), (7, 7)]
    for statement in statements:
        assert statement.text in sql


def test_semicolons_in_dollar_quotes_and_comments_do_not_split() -> None:
    sql = "DO $$ BEGIN DROP TABLE x; END $$;\n/* a; b */ SELECT 1 -- c; d\n;"
    statements = split_statements(sql)
    assert len(statements) == 2
    assert statements[0].text.startswith("DO $$") and statements[0].text.endswith("END $$")


def test_first_line_offsets_line_numbers() -> None:
    statements = split_statements("SELECT 1;\n\nSELECT 2;", first_line=10)
    assert [s.line for s in statements] == [10, 12]


def test_untokenizable_text_is_one_statement_with_an_error() -> None:
    statements = split_statements("SELECT 'unterminated")
    assert len(statements) == 1
    assert statements[0].tokens == ()
    assert statements[0].token_error


def test_trailing_comment_belongs_to_the_statement_it_follows() -> None:
    statements = split_statements("DROP TABLE a; -- gone\nSELECT 1;")
    assert [c.text for c in statements[0].comments] == ["gone"]
    assert statements[0].comments[0].in_text is False
    assert statements[1].comments == ()
    assert statements[1].text == "SELECT 1"


def test_fingerprint_ignores_literal_values_case_and_whitespace() -> None:
    a, b, c, d = split_statements(
        "UPDATE t SET a = 1 WHERE id = 'x';"
        "update T  set A = 2\n where ID = $1;"
        "UPDATE t SET b = 1 WHERE id = 'x';"
        "UPDATE \"T\" SET a = 1 WHERE id = 'x';"
    )
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint  # another column is another statement
    assert a.fingerprint != d.fingerprint  # a quoted identifier keeps its case
    assert a.sha256 != b.sha256


def test_fingerprint_keeps_code_bodies_apart() -> None:
    safe, drop = split_statements(
        "DO $$ BEGIN RAISE NOTICE 'x'; END $$; DO $$ BEGIN DROP TABLE x; END $$;"
    )
    assert safe.fingerprint != drop.fingerprint


def test_comments_do_not_change_the_fingerprint_but_change_the_sha256() -> None:
    plain, commented = split_statements("DROP TABLE a; -- x\n/* why */ DROP TABLE a;")
    assert plain.fingerprint == commented.fingerprint
    assert plain.sha256 != commented.sha256
