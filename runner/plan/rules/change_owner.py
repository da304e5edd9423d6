"""SO508: ALTER ... OWNER TO hands an object, and every right over it, to another role."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


def _owner_to(ws: list[str]) -> str | None:
    for i in range(len(ws) - 2):
        if ws[i : i + 2] == ["OWNER", "TO"]:
            return ws[i + 2].lower()
    return None


@rule(
    "SO508",
    "change-owner",
    Category.ACCESS_CONTROL,
    Severity.WARNING,
    summary="ALTER ... OWNER TO, REASSIGN OWNED: a new owner, with every right over the object.",
    rationale="""
        An object's owner holds every privilege on it and cannot lose them by
        REVOKE: it can read and change every row, grant access to anyone, drop
        the table, and it is exempt from the table's row-level security unless
        FORCE ROW LEVEL SECURITY is set. Making the application's role the
        owner of a PHI table, or of a SECURITY DEFINER function, quietly widens
        what that role can do; REASSIGN OWNED moves every object of a role at
        once. Reported whether or not the object was created in the plan.
    """,
    safer="""
        Keep objects owned by a dedicated, non-login owner role and grant the
        application the privileges it needs.
    """,
    triggers=[
        "ALTER TABLE patients OWNER TO app",
        "ALTER SCHEMA ehr OWNER TO contractor",
        "ALTER FUNCTION export_all() OWNER TO postgres",
        "REASSIGN OWNED BY old_owner TO app",
        "ALTER DATABASE ehr OWNER TO app",
    ],
    passes=[
        "ALTER TABLE patients ADD COLUMN owner_id bigint",
        "COMMENT ON TABLE patients IS 'OWNER TO app'",
        "ALTER SEQUENCE patients_id_seq OWNED BY patients.id",
    ],
)
def change_owner(view: StatementView, context: Context) -> Iterator[str]:
    tokens = view.raw.tokens
    if not tokens or tokens[0].text.upper() not in ("ALTER", "REASSIGN"):
        return  # every kind may carry OWNER TO; this keeps the rest cheap
    if tokens[0].text.upper() == "ALTER" and not any(t.text.upper() == "OWNER" for t in tokens):
        return
    ws = [w.text for w in words(view.raw.tokens) if not w.is_string]
    if not ws:
        return
    if ws[:2] == ["REASSIGN", "OWNED"]:
        yield f"reassigns every object owned by {' '.join(ws[3:]).lower()}"
        return
    if ws[0] != "ALTER":
        return
    new_owner = _owner_to(ws)
    if new_owner is None:
        return
    what = view.shape.relation if view.shape is not None and view.shape.relation else "?"
    yield f"makes {new_owner} the owner of {ws[1].lower()} {what}: it gets every right over it"
