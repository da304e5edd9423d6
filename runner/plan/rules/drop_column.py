"""SO102: ALTER TABLE ... DROP COLUMN removes a column's data from every row."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.tokenizer_core import TokenType

from runner.plan.commands import Word, normalise_name, words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, ident, rule, table_name
from runner.plan.rules.drop_reader import read_names


@dataclass(frozen=True)
class DroppedColumn:
    table: str
    column: str
    cascade: bool


def dropped_columns(view: StatementView) -> list[DroppedColumn]:
    """Every column an ``ALTER TABLE`` drops, in any of its actions."""
    node = view.node
    if isinstance(node, exp.Alter):
        if (node.args.get("kind") or "").upper() != "TABLE":
            return []
        out = []
        for action in node.args.get("actions") or ():
            if isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN":
                table = table_name(node.this)
                for column in action.args.get("tables") or action.expressions:
                    name = ident(column.this if isinstance(column, exp.Column) else column)
                    out.append(DroppedColumn(table, name, bool(action.args.get("cascade"))))
        return out
    tokens = view.raw.tokens
    if len(tokens) < 2 or tokens[0].token_type is not TokenType.ALTER:
        return []
    return _from_tokens(words(tokens))


def _from_tokens(ws: list[Word]) -> list[DroppedColumn]:
    """``ALTER TABLE`` that sqlglot could not parse (several actions of other kinds)."""
    if [w.text for w in ws[:2]] != ["ALTER", "TABLE"]:
        return []
    i = 2
    if [w.text for w in ws[i : i + 2]] == ["IF", "EXISTS"]:
        i += 2
    names, i = read_names(ws, i)
    if not names:
        return []
    table = names[0]
    out = []
    for action in _actions(ws[i:]):
        texts = [w.text for w in action]
        if not texts or texts[0] != "DROP" or texts[1:2] == ["CONSTRAINT"]:
            continue
        j = 1
        if texts[j : j + 1] == ["COLUMN"]:
            j += 1
        if texts[j : j + 2] == ["IF", "EXISTS"]:
            j += 2
        if j < len(action) and action[j].is_name:
            out.append(
                DroppedColumn(table, normalise_name([action[j]]), "CASCADE" in texts[j + 1 :])
            )
    return out


def _actions(ws: list[Word]) -> list[list[Word]]:
    actions: list[list[Word]] = [[]]
    depth = 0
    for word in ws:
        kind = word.token.token_type
        depth += kind is TokenType.L_PAREN
        depth -= kind is TokenType.R_PAREN
        if kind is TokenType.COMMA and depth == 0:
            actions.append([])
        else:
            actions[-1].append(word)
    return actions


@rule(
    "SO102",
    "drop-column",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="ALTER TABLE ... DROP COLUMN deletes the column's value in every row.",
    rationale="""
        Dropping a column discards its value in every row at once (PostgreSQL
        only hides it until the next rewrite, but there is no way to read it back),
        and with CASCADE also drops the views, indexes and constraints that use
        it. Application code still selecting or inserting the column fails as
        soon as the statement commits. A column of a table created earlier in
        the same plan held nothing that existed before the plan and is not
        reported.
    """,
    safer="""
        Stop reading and writing the column in one release, keep a copy if it may
        be needed ('CREATE TABLE archive.users_bio AS SELECT id, bio FROM users;'),
        and drop it in a later release: 'ALTER TABLE users DROP COLUMN bio;'.
    """,
    triggers=[
        "ALTER TABLE ONLY accounts DROP COLUMN nickname",
        "ALTER TABLE IF EXISTS users DROP COLUMN IF EXISTS legacy_flag CASCADE",
        'ALTER TABLE public."Patients" ADD COLUMN x int, DROP "SSN"',
        "ALTER TABLE users DROP COLUMN bio, ALTER COLUMN name SET STATISTICS 500",
        "DO $$ BEGIN ALTER TABLE users DROP COLUMN bio; END $$",
        "DO $$ BEGIN EXECUTE 'ALTER TABLE users DROP COLUMN bio'; END $$",
    ],
    passes=[
        "CREATE TABLE scratch (id int, note text);\nALTER TABLE scratch DROP COLUMN note",
        "ALTER TABLE users DROP CONSTRAINT users_email_key",
        "ALTER TABLE users ALTER COLUMN bio DROP DEFAULT",
        "ALTER TABLE users ALTER COLUMN bio DROP NOT NULL",
        "ALTER TABLE users ADD COLUMN bio text",
    ],
)
def drop_column(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind is not None and not view.kind.startswith("alter_table"):
        return
    for dropped in dropped_columns(view):
        if context.schema.created_in_plan(dropped.table):
            continue
        extra = " and what depends on it (CASCADE)" if dropped.cascade else ""
        yield f"drops column {dropped.table}.{dropped.column} and its data{extra}"
