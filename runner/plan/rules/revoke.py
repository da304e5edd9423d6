"""SO313: revoking privileges takes access away from the release that still uses it."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, ident, rule, table_name

_MAX_TEXT = 120


def _privilege(node: exp.Expression) -> str:
    name = node.this.this if isinstance(node.this, exp.Var) else ident(node.this)
    columns = [ident(c.this if isinstance(c, exp.Column) else c) for c in node.expressions]
    return f"{name} ({', '.join(columns)})" if columns else str(name)


def _describe(node: exp.Revoke) -> str:
    privileges = ", ".join(_privilege(p) for p in node.args.get("privileges") or [])
    kind = (node.args.get("kind") or "").lower()
    securable = node.args.get("securable")
    target = table_name(securable) if securable is not None else "?"
    principals = ", ".join(ident(p.this) for p in node.args.get("principals") or [])
    on = f"{kind} {target}" if kind else target
    return f"{privileges} on {on} from {principals}"


def _describe_tokens(view: StatementView) -> str:
    text = " ".join(w.token.text for w in words(view.raw.tokens)[1:])
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


@rule(
    "SO313",
    "revoke",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Revoking privileges or role membership takes access away from running clients.",
    rationale="""
        REVOKE takes effect for new statements at once. The application's role,
        a reporting role or an integration reading through PUBLIC loses the
        access it had, and the release still running during the deploy (and
        every job using the role) fails with "permission denied" until it stops
        needing it. Revoking access is often the right call for PHI; it should
        still be a deliberate, reviewed step, not a side effect of a deploy.
    """,
    safer="""
        Revoke in a release after every client has stopped using the privilege
        (check pg_stat_statements or the audit log for the role), and say in the
        PR who loses what. REVOKE GRANT OPTION FOR ... only removes the right to
        re-grant and is not reported.
    """,
    triggers=[
        "REVOKE SELECT ON patients FROM app",
        "REVOKE SELECT, UPDATE (ssn) ON TABLE public.patients FROM app, GROUP reporting CASCADE",
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM reporting",
        "REVOKE clinician FROM dr_house",
    ],
    passes=[
        "GRANT SELECT ON patients TO app",
        "REVOKE GRANT OPTION FOR SELECT ON patients FROM app",
        "CREATE TABLE staging_patients (id bigint);\nREVOKE ALL ON staging_patients FROM PUBLIC",
    ],
    kinds=("revoke",),
)
def revoke(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind != "revoke":
        return
    node = view.node
    if isinstance(node, exp.Revoke):
        if node.args.get("grant_option"):
            return
        securable = node.args.get("securable")
        kind = (node.args.get("kind") or "TABLE").upper()
        if (
            kind == "TABLE"
            and isinstance(securable, exp.Table)
            and context.schema.created_in_plan(table_name(securable))
        ):
            return
        described = _describe(node)
    else:
        ws = words(view.raw.tokens)
        if [w.text for w in ws[1:4]] == ["GRANT", "OPTION", "FOR"]:
            return
        described = _describe_tokens(view)
    yield (
        f"revokes {described}: clients of the previous release using this access fail with "
        f'"permission denied" from now on'
    )
