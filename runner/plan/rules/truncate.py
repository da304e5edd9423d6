"""SO109: TRUNCATE deletes every row of the tables it names."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.tokenizer_core import TokenType

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule, table_name
from runner.plan.rules.drop_reader import read_names


@dataclass(frozen=True)
class Truncated:
    tables: tuple[str, ...]
    cascade: bool
    restart_identity: bool


def read_truncate(view: StatementView) -> Truncated | None:
    """The tables a ``TRUNCATE`` empties, from the AST or (unparsed) its tokens."""
    node = view.node
    if isinstance(node, exp.TruncateTable):
        option = str(node.args.get("option") or "").upper()
        identity = str(node.args.get("identity") or "").upper()
        return Truncated(
            tables=tuple(table_name(t) for t in node.expressions),
            cascade=option == "CASCADE",
            restart_identity=identity == "RESTART",
        )
    tokens = view.raw.tokens
    if not tokens or tokens[0].text.upper() != "TRUNCATE":
        return None
    ws = words(tokens)
    i = 2 if len(ws) > 1 and ws[1].text == "TABLE" else 1
    names, i = read_names(ws, i)
    rest = [w.text for w in ws[i:] if w.token.token_type is not TokenType.IDENTIFIER]
    return Truncated(tuple(names), "CASCADE" in rest, "RESTART" in rest)


@rule(
    "SO109",
    "truncate",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="TRUNCATE deletes every row of the table at once.",
    rationale="""
        TRUNCATE empties a table (and, unless ONLY is given, its partitions and
        inheritance children) in one step under an ACCESS EXCLUSIVE lock. It is
        not logged row by row, fires no DELETE triggers (audit triggers see
        nothing) and, once committed, only a backup restore brings the rows
        back. RESTART IDENTITY also rewinds the tables' sequences. A table
        created earlier in the same plan held nothing that existed before the
        plan and is not reported.
    """,
    safer="""
        Keep the rows before emptying the table
        ('CREATE TABLE archive.sessions_2026 AS TABLE sessions;'), or delete
        what is really obsolete in bounded batches
        ('DELETE FROM sessions WHERE expires_at < now() - interval '30 days';').
    """,
    triggers=[
        "TRUNCATE orders",
        "truncate table only public.orders, line_items restart identity",
        "CREATE TABLE scratch (id int);\nTRUNCATE scratch, audit_log",
        "DO $$ BEGIN TRUNCATE sessions; END $$",
        "DO $$ BEGIN EXECUTE 'TRUNCATE TABLE sessions'; END $$",
    ],
    passes=[
        "CREATE TABLE scratch (id int);\nTRUNCATE scratch",
        "/* TRUNCATE orders; */ ALTER TABLE orders ADD COLUMN note text",
        "SELECT 'TRUNCATE orders'",
        "DELETE FROM sessions WHERE expires_at < now()",
    ],
    kinds=("truncate", None),
)
def truncate(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind not in ("truncate", None):
        return
    truncated = read_truncate(view)
    if truncated is None:
        return
    restart = " and resets its sequences (RESTART IDENTITY)" if truncated.restart_identity else ""
    for table in truncated.tables:
        if not context.schema.created_in_plan(table):
            yield f"truncates table {table}: deletes every row{restart}"
