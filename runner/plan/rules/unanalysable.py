"""SO001-SO003: statements the analysis cannot read fail closed.

A statement nothing in the analysis recognises is never passed as safe: it is
reported here and, by default, needs a reviewer's approval.
"""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO001",
    "unparseable-statement",
    Category.UNANALYSABLE,
    Severity.ERROR,
    summary="The statement could not be parsed, tokenized or analysed.",
    rationale="""
        Signoff judges statements by their syntax tree. A statement that neither
        sqlglot nor the token classifier can read, or that a rule fails on, might
        do anything, so it is not passed as safe: a reviewer has to read it.
    """,
    safer="""
        Rewrite the statement in plain PostgreSQL syntax, or have a reviewer
        approve it on the pull request.
    """,
    triggers=["SELECT 'unterminated", "IMPORT FOREIGN SCHEMA remote FROM SERVER s INTO local"],
    passes=["SELECT 1", "CLUSTER orders USING orders_pkey"],
)
def unparseable(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind is None and view.parse_error is not None:
        yield f"cannot be analysed: {view.parse_error}"


@rule(
    "SO002",
    "unrecognised-statement",
    Category.UNANALYSABLE,
    Severity.ERROR,
    summary="The statement parsed only as an opaque command Signoff does not recognise.",
    rationale="""
        sqlglot models some PostgreSQL statements only as an opaque ``Command``.
        Signoff recognises the common ones from their tokens (VACUUM, REINDEX,
        ALTER TYPE ... ADD VALUE, DETACH PARTITION, ...); anything else is
        unknown, and an unknown statement is assumed to be risky until a
        reviewer says otherwise.
    """,
    safer="""
        Split multi-action ALTER TABLE statements into one action each, or have a
        reviewer approve the statement.
    """,
    triggers=[
        "CALL archive_old_patients()",
        "ALTER TABLE t ADD COLUMN a int, SET SCHEMA archive",
        "ALTER SYSTEM SET work_mem = '64MB'",
        "CREATE EVENT TRIGGER audit ON ddl_command_start EXECUTE FUNCTION f()",
    ],
    passes=["VACUUM ANALYZE orders", "ALTER TYPE mood ADD VALUE 'meh'", "SELECT 1"],
)
def unrecognised(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind is None and view.parse_error is None:
        first = view.raw.tokens[0].text.upper() if view.raw.tokens else "statement"
        yield f"{first} statement of a shape Signoff does not recognise"


@rule(
    "SO003",
    "unreadable-code-block",
    Category.UNANALYSABLE,
    Severity.ERROR,
    summary="A DO block runs SQL that cannot be known before it runs.",
    rationale="""
        Statements inside a DO block are analysed like any other. ``EXECUTE`` of a
        computed string (``format()``, concatenation, a variable) and bodies in
        languages other than PL/pgSQL only reveal their SQL at run time, so the
        analysis cannot vouch for them.
    """,
    safer="""
        Write the statements out in the migration, or EXECUTE string literals only;
        otherwise a reviewer must approve the block.
    """,
    triggers=[
        "DO $$ BEGIN EXECUTE 'DROP TABLE ' || quote_ident('t'); END $$",
        "DO $$ BEGIN EXECUTE format('TRUNCATE %I', 'audit'); END $$",
        "DO LANGUAGE plpython3u $$ plpy.execute('select 1') $$",
    ],
    passes=[
        "DO $$ BEGIN RAISE NOTICE 'hello'; END $$",
        "DO $$ BEGIN EXECUTE 'ANALYZE patients'; END $$",
    ],
)
def unreadable_block(view: StatementView, context: Context) -> Iterator[str]:
    yield from view.unreadable_reasons
