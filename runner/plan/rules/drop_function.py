"""SO308: dropping a function or procedure breaks the callers still running."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule, table_name
from runner.plan.rules.drop_reader import read_names

_NODE_KINDS = {"FUNCTION": "function", "PROCEDURE": "procedure", "AGGREGATE": "aggregate"}


def _names_from_tokens(view: StatementView) -> tuple[str, list[str]]:
    """``DROP FUNCTION IF EXISTS f(int), s.g(text) CASCADE`` -> ("function", ["f", "s.g"])."""
    ws = words(view.raw.tokens)
    kind = _NODE_KINDS.get(ws[1].text, "function") if len(ws) > 1 else "function"
    i = 2
    if [w.text for w in ws[i : i + 2]] == ["IF", "EXISTS"]:
        i += 2
    names, _ = read_names(ws, i)
    return kind, names


@rule(
    "SO308",
    "drop-function",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Dropping a function, procedure or aggregate breaks the callers still running.",
    rationale="""
        The previous release, still running during a rolling deploy, and other
        database objects (views, defaults, check constraints, triggers, which
        DROP ... CASCADE removes silently) call functions by name and signature.
        After the drop those calls fail with "function does not exist". Code
        lives in migrations, so nothing is lost that cannot be recreated, but the
        callers break until they are gone.
    """,
    safer="""
        Drop a function only in a release after the one that stopped calling it;
        to change its body use CREATE OR REPLACE FUNCTION with the same signature,
        and to change its signature create the new one alongside the old.
        Never use CASCADE without listing what it removes.
    """,
    triggers=[
        "DROP FUNCTION IF EXISTS f(int), g(text)",
        "DROP FUNCTION billing.invoice_total(bigint) CASCADE",
        "DROP PROCEDURE archive_patients(int)",
        "DROP AGGREGATE array_accum(anyelement)",
    ],
    passes=[
        "CREATE OR REPLACE FUNCTION f(a int) RETURNS int LANGUAGE sql AS $$ SELECT a $$",
        "ALTER FUNCTION f(int) OWNER TO app",
        "DROP TRIGGER IF EXISTS audit ON patients",
    ],
    kinds=(None, "drop*"),
)
def drop_function(view: StatementView, context: Context) -> Iterator[str]:
    node = view.node
    if isinstance(node, exp.Drop):
        kind = _NODE_KINDS.get((node.args.get("kind") or "").upper())
        if kind is None:
            return
        names = [table_name(t) for t in node.args.get("tables") or []]
    elif view.kind == "drop_function":
        kind, names = _names_from_tokens(view)
    else:
        return
    for name in names or ["?"]:
        yield (
            f"drops {kind} {name}: the previous release and database objects that call it "
            f'fail with "function does not exist" from now on'
        )
