"""SO515: SET ROLE / SET SESSION AUTHORIZATION runs what follows with another role's rights."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules._settings import setting_changes
from runner.plan.rules.base import Context, StatementView, rule

_BACK = frozenset({"NONE", "DEFAULT"})


@rule(
    "SO515",
    "set-role",
    Category.ACCESS_CONTROL,
    Severity.WARNING,
    summary="SET ROLE / SET SESSION AUTHORIZATION: later statements run as another role.",
    rationale="""
        SET ROLE switches the privileges every later statement of the session
        runs with to another role the connecting role is a member of, and SET
        SESSION AUTHORIZATION (for a superuser) to any role at all: one with
        BYPASSRLS, the tables' owner (exempt from their row-level security),
        or a superuser. The audit trail still names the session's principal,
        so the change of rights is visible only in this statement. RESET ROLE,
        SET ROLE NONE and SET SESSION AUTHORIZATION DEFAULT go back and are
        not reported; set_config('role', ...) is read the same way.
    """,
    safer="""
        Connect as the role that should run the statements; to create objects
        owned by a dedicated owner, grant the migration role membership with
        SET only for that owner, and say so in the PR.
    """,
    triggers=[
        "SET ROLE postgres",
        "SET LOCAL ROLE table_owner",
        "SET SESSION AUTHORIZATION admin",
        "SELECT set_config('role', 'postgres', false)",
    ],
    passes=[
        "RESET ROLE",
        "SET ROLE NONE",
        "SET SESSION AUTHORIZATION DEFAULT",
        "SET search_path = ehr",
    ],
)
def set_role(view: StatementView, context: Context) -> Iterator[str]:
    tokens = view.raw.tokens
    if not tokens:
        return
    first = tokens[0].text.upper()
    if first == "SET":
        ws = [w.text for w in words(tokens)]
        i = 2 if len(ws) > 1 and ws[1] in ("LOCAL", "SESSION") else 1
        if ws[i : i + 1] == ["ROLE"] and len(ws) > i + 1 and ws[i + 1].strip("'") not in _BACK:
            yield f"runs the session's later statements as role {ws[i + 1].lower()} (SET ROLE)"
            return
        if ws[1:3] == ["SESSION", "AUTHORIZATION"] and len(ws) > 3 and ws[3] not in _BACK:
            yield f"runs the session's later statements as role {ws[3].lower()}"
            return
    elif first == "SELECT":
        for change in setting_changes(view):
            if change.name in ("role", "session_authorization") and (
                (change.value or "?").strip("'").upper() not in _BACK
            ):
                yield f"{change.how} {change.name} to {change.value or 'a value not known'}"
