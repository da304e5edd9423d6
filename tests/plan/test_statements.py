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


SHAPES = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
    "  SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
    "\n\t-- signoff: allow SO301 because tiny\nSELECT 1 FROM t;  -- trailing\n",
    "/* lead */ SELECT 'a;b', E'x\\'y', $1, 1.5e3, x'FF', B'101', N'n', $$b$$ FROM t;",
    "SELECT 1; SELECT 2",
    "SELECT 1;;",
    ";SELECT 1",
    ";",
    "   ",
    "-- only a comment",
]


def test_single_statement_text_is_what_the_split_gives() -> None:
    from runner.plan.statements import literal_shape, tokenize

    singles = []
    for sql in SHAPES:
        _, text = literal_shape(sql, tokenize(sql))
        if text is not None:  # never a different answer; None is only a slower path
            assert [s.text for s in split_statements(sql)] == [text], sql
            singles.append(sql)
    assert singles == SHAPES[:4]


def test_literal_mask_keeps_everything_but_literal_values() -> None:
    from runner.plan.statements import literal_shape, tokenize

    def mask(sql: str) -> str:
        return literal_shape(sql, tokenize(sql))[0]

    assert mask("SELECT a FROM t WHERE aid = 123456;") == "SELECT a FROM t WHERE aid = ?;"
    assert mask("SELECT 'it''s', E'x\\'y', x'FF', $1, $$body$$ FROM t") == (
        "SELECT ?, ?, ?, ??, $$body$$ FROM t"  # dollar bodies are kept: code, not data
    )
    # Same literals, different anything else: different masks (a finer key than
    # the fingerprint, which ignores spacing and case).
    assert mask("SELECT a FROM t WHERE x = 1") != mask("SELECT a FROM t WHERE y = 1")
    assert mask("SELECT a FROM t WHERE x = 1") != mask("select a from t where x = 1")
    assert mask("SELECT 1 -- signoff: allow SO301 because x") != mask("SELECT 1")
    # Same mask implies the same fingerprint.
    for a, b in [
        ("SELECT a FROM t WHERE x = 1", "SELECT a FROM t WHERE x = 'two'"),
        ("SELECT $1, 2.5e3", "SELECT $22, 7"),
    ]:
        assert mask(a) == mask(b)
        (ra,), (rb,) = split_statements(a), split_statements(b)
        assert ra.fingerprint == rb.fingerprint


def test_a_psql_script_that_cannot_be_tokenized_keeps_the_statements_before() -> None:
    from runner.plan.statements import clean_cut, tokenize

    sql = "SELECT 1;\nDROP TABLE a; -- gone\nSELECT 'never closed;\nSELECT 2;\n"
    driver = split_statements(sql)
    assert len(driver) == 1 and driver[0].token_error  # the gateway's view: all or nothing
    script = split_statements(sql, psql_script=True)
    assert [s.text for s in script[:2]] == ["SELECT 1", "DROP TABLE a"]
    assert [s.line for s in script] == [1, 2, 3]
    assert script[2].token_error and script[2].text == "SELECT 'never closed;\nSELECT 2;"
    # Where a script may be cut: after a line ending in ';' (a line comment may follow).
    text = "SELECT 1; SELECT 2\n;\nSELECT 3; -- c\nSELECT 4"
    assert clean_cut(text, tokenize(text)) == text.index("SELECT 4")
    assert clean_cut("SELECT 1; SELECT 2", tokenize("SELECT 1; SELECT 2")) == 0


def test_meta_command_lines_are_not_statement_text() -> None:
    statements = split_statements(
        "\\set ON_ERROR_STOP on\n-- create\nCREATE TABLE a (id int);\n\\echo done\n",
        psql_script=True,
    )
    assert [s.text for s in statements] == ["-- create\nCREATE TABLE a (id int)"]
    assert [(m.name, m.line) for m in statements[0].meta_commands] == [
        ("\\set", 1),
        ("\\echo", 4),
    ]
