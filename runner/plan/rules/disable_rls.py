"""SO504: DISABLE / NO FORCE ROW LEVEL SECURITY switches a table's row policies off."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO504",
    "disable-row-level-security",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="ALTER TABLE ... DISABLE ROW LEVEL SECURITY / NO FORCE ROW LEVEL SECURITY.",
    rationale="""
        With row-level security disabled, every policy on the table is ignored
        and any role with SELECT reads every row: the per-clinic or per-patient
        separation the policies enforced is gone the moment it commits, for the
        running application too. NO FORCE ROW LEVEL SECURITY exempts the table's
        owner again, and the owner is often the application's own role. Both
        are reported whether or not the table was created in the plan: the
        policies protect the rows that arrive later.
    """,
    safer="""
        Keep RLS enabled and change the policies (ALTER POLICY / CREATE POLICY
        in the same transaction); for a maintenance job that must see every
        row, use a role with a dedicated, reviewed policy.
    """,
    triggers=[
        "ALTER TABLE patients DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE IF EXISTS ONLY ehr.patients NO FORCE ROW LEVEL SECURITY",
        "DO $$ BEGIN ALTER TABLE patients DISABLE ROW LEVEL SECURITY; END $$",
    ],
    passes=[
        "ALTER TABLE patients ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE patients FORCE ROW LEVEL SECURITY",
        "COMMENT ON TABLE patients IS 'DISABLE ROW LEVEL SECURITY never'",
    ],
    kinds=("alter_table_disable_rls", None),
)
def disable_rls(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind == "alter_table_disable_rls" and view.shape is not None:
        table = view.shape.relation or "?"
    elif view.kind is None:
        # Several actions in one ALTER TABLE are not classified: read the words.
        ws = [w.text for w in words(view.raw.tokens)]
        if ws[:2] != ["ALTER", "TABLE"] or not any(
            ws[i : i + 4] == ["DISABLE", "ROW", "LEVEL", "SECURITY"]
            or ws[i : i + 4] == ["NO", "FORCE", "ROW", "LEVEL"]
            for i in range(len(ws))
        ):
            return
        table = "?"
    else:
        return
    ws = [w.text for w in words(view.raw.tokens)]
    how = "NO FORCE" if "FORCE" in ws else "DISABLE"
    if how == "NO FORCE":
        yield f"exempts the owner of {table} from its row-level security policies (NO FORCE)"
    else:
        yield f"disables row-level security on {table}: its policies stop restricting rows"
