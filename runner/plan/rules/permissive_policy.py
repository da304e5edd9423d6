"""SO505: a permissive row-level security policy whose condition is true for every row."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import Token, TokenType

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules._narrowing import true_for_every_row
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.drop_trigger import table_after_on

_PARSER = Postgres().parser()


def _clauses(view: StatementView) -> Iterator[tuple[str, tuple[Token, ...]]]:
    """(``USING`` | ``WITH CHECK``, the tokens inside its parentheses)."""
    tokens = view.raw.tokens
    ws = words(tokens)
    i = 0
    while i < len(ws):
        text = ws[i].text
        name = None
        if text == "USING" and i + 1 < len(ws) and ws[i + 1].token.token_type is TokenType.L_PAREN:
            name, start = "USING", i + 1
        elif text == "WITH" and i + 2 < len(ws) and ws[i + 1].text == "CHECK":
            name, start = "WITH CHECK", i + 2
        if name is None:
            i += 1
            continue
        depth = 0
        for j in range(start, len(tokens)):
            kind = tokens[j].token_type
            depth += kind is TokenType.L_PAREN
            depth -= kind is TokenType.R_PAREN
            if depth == 0:
                yield name, tuple(tokens[start + 1 : j])
                i = j
                break
        else:
            yield name, ()
            return
        i += 1


def _condition(view: StatementView, tokens: tuple[Token, ...]) -> exp.Expression | None:
    if not tokens:
        return None
    try:
        parsed = _PARSER.parse(list(tokens), view.raw.source_text)
    except (ParseError, TokenError):
        return None
    if len(parsed) != 1 or not isinstance(parsed[0], exp.Expression):
        return None
    return parsed[0]


@rule(
    "SO505",
    "permissive-policy-true",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="CREATE / ALTER POLICY ... USING (true): a permissive policy passing every row.",
    rationale="""
        Row-level security grants rows through permissive policies, OR-ed
        together: one whose USING (or WITH CHECK) is true for every row, USING
        (true), USING (1 = 1), USING (clinic_id = clinic_id), makes every other
        permissive policy on the table irrelevant, and every role it applies to
        reads (or writes) every row, PHI of every clinic included. It is the
        row-level equivalent of disabling RLS and reads like a harmless policy.
        A restrictive policy with a true condition restricts nothing and is not
        reported; ALTER POLICY is reported (it may be permissive). A condition
        the analysis cannot read is reported too.
    """,
    safer="""
        Write the condition that picks the role's rows ('CREATE POLICY
        by_clinic ON patients USING (clinic_id = current_setting('app.clinic')::int);');
        for a role that really needs every row, grant BYPASSRLS-free access
        through a reviewed view or a role-scoped policy ('... TO auditor USING
        (true)' is still reported: approve it).
    """,
    triggers=[
        "CREATE POLICY open ON patients USING (true)",
        "CREATE POLICY open ON patients AS PERMISSIVE FOR SELECT TO app USING (1 = 1)",
        "CREATE POLICY w ON patients FOR INSERT WITH CHECK (true)",
        "ALTER POLICY by_clinic ON patients USING (clinic_id = clinic_id)",
        "CREATE POLICY p ON patients USING (mrn IS NULL OR mrn IS NOT NULL)",
    ],
    passes=[
        "CREATE POLICY by_clinic ON patients"
        " USING (clinic_id = current_setting('app.clinic')::int)",
        "CREATE POLICY r ON patients AS RESTRICTIVE USING (true)",
        "CREATE POLICY admins ON patients TO PUBLIC USING (current_user = 'auditor')",
        "ALTER POLICY by_clinic ON patients RENAME TO by_site",
        "COMMENT ON POLICY by_clinic ON patients IS 'USING (true) was wrong'",
    ],
    kinds=("create_policy", "alter_policy"),
)
def permissive_policy(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind not in ("create_policy", "alter_policy") or view.shape is None:
        return
    ws = [w.text for w in words(view.raw.tokens)]
    restrictive = any(ws[i : i + 2] == ["AS", "RESTRICTIVE"] for i in range(len(ws)))
    if restrictive:
        return
    name = view.shape.relation or "?"
    table = table_after_on(view) or "?"
    for clause, tokens in _clauses(view):
        condition = _condition(view, tokens)
        if condition is None:
            yield f"policy {name} on {table}: its {clause} condition cannot be read"
            continue
        reason = true_for_every_row(condition)
        if reason is not None:
            yield (
                f"policy {name} on {table} lets every row through ({clause} {reason}): "
                "row-level security no longer restricts the roles it applies to"
            )
