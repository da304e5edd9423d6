"""SO301-SO305, SO314: renames break the previous release while it still runs.

During a rolling deploy the old and the new release of the application run side
by side against one database. A rename takes effect at once, for every client:
the old release keeps sending the old name and fails until its last instance is
gone. Objects created earlier in the same plan have no old clients and are not
reported.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.commands import normalise_name, words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, ident, rule, table_name

_SHAPE_RELATION_RENAMES = {
    "alter_table_rename": "table",
    "alter_foreign_table_rename": "foreign table",
    "alter_view_rename": "view",
    "alter_materialized_view_rename": "materialized view",
}
_NODE_RELATION_KINDS = {"TABLE": "table", "VIEW": "view"}


def _is_column_rename_misparse(node: exp.Alter) -> bool:
    """sqlglot reads ``RENAME a TO b`` (no COLUMN) as a table rename with a ``TO`` option."""
    return any(isinstance(o, exp.ToTableProperty) for o in node.args.get("options") or [])


def _relation_renames(view: StatementView) -> Iterator[tuple[str, str, str]]:
    """(object kind, old name, new name) for ALTER TABLE/VIEW ... RENAME TO."""
    node = view.node
    if isinstance(node, exp.Alter):
        kind = _NODE_RELATION_KINDS.get((node.args.get("kind") or "").upper())
        if kind is None or _is_column_rename_misparse(node):
            return
        for action in node.args.get("actions") or []:
            if isinstance(action, exp.AlterRename):
                yield kind, table_name(node.this), table_name(action.this)
    elif view.shape is not None and view.shape.kind in _SHAPE_RELATION_RENAMES:
        new = view.shape.args[0] if view.shape.args else "?"
        yield _SHAPE_RELATION_RENAMES[view.shape.kind], view.shape.relation or "?", new


def _column_renames(view: StatementView) -> Iterator[tuple[str, str, str]]:
    """(table, old column, new column) for ALTER TABLE ... RENAME [COLUMN] a TO b."""
    node = view.node
    if isinstance(node, exp.Alter):
        if (node.args.get("kind") or "").upper() not in ("TABLE", "VIEW"):
            return
        table = table_name(node.this)
        if _is_column_rename_misparse(node):
            renamed = [a for a in node.args.get("actions") or [] if isinstance(a, exp.AlterRename)]
            targets = [
                o for o in node.args.get("options") or [] if isinstance(o, exp.ToTableProperty)
            ]
            for action, target in zip(renamed, targets, strict=False):
                yield table, table_name(action.this), table_name(target.this)
            return
        for action in node.args.get("actions") or []:
            if isinstance(action, exp.RenameColumn):
                old, new = action.this, action.args.get("to")
                yield (
                    table,
                    ident(old.this if isinstance(old, exp.Column) else old),
                    ident(new.this if isinstance(new, exp.Column) else new),
                )
    elif view.shape is not None and view.shape.kind in (
        "alter_table_rename_column",
        "alter_foreign_table_rename_column",
        "alter_view_rename_column",
        "alter_materialized_view_rename_column",
    ):
        old = view.shape.args[0] if view.shape.args else "?"
        yield view.shape.relation or "?", old, _name_after_to(view) or "?"


def _name_after_to(view: StatementView) -> str | None:
    """The (possibly qualified) name after the last ``TO`` of a token-classified statement."""
    ws = words(view.raw.tokens)
    for index in range(len(ws) - 1, -1, -1):
        if ws[index].text == "TO":
            parts = [w for w in ws[index + 1 :] if w.is_name]
            return normalise_name(parts) if parts else None
    return None


def _string_after_to(view: StatementView) -> str | None:
    ws = words(view.raw.tokens)
    for index in range(len(ws) - 1, 0, -1):
        if ws[index].is_string and ws[index - 1].text == "TO":
            return ws[index].text
    return None


@rule(
    "SO301",
    "rename-table",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Renaming a table or view breaks every client still using the old name.",
    rationale="""
        ALTER TABLE/VIEW/MATERIALIZED VIEW ... RENAME TO takes effect for every
        session the moment it commits. During a rolling deploy the previous
        release is still running and still sends the old name: its queries fail
        with "relation does not exist" until its last instance is replaced.
        Nothing is lost, but the deploy causes errors.
    """,
    safer="""
        Rename in two releases. In one transaction: ALTER TABLE old RENAME TO new;
        CREATE VIEW old AS SELECT * FROM new; (a simple view is updatable, so the
        previous release keeps reading and writing through it). Drop the view in a
        later release, once no running code uses the old name.
    """,
    triggers=[
        "ALTER TABLE users RENAME TO people",
        'ALTER TABLE IF EXISTS public."Users" RENAME TO people',
        "ALTER VIEW active_users RENAME TO current_users",
        "ALTER MATERIALIZED VIEW daily_totals RENAME TO daily_sums",
    ],
    passes=[
        "CREATE TABLE staging (id bigint); ALTER TABLE staging RENAME TO imported",
        "ALTER INDEX users_email_idx RENAME TO users_email_key",
        "ALTER TABLE users RENAME COLUMN email TO email_address",
    ],
    kinds=("*alter*",),
)
def rename_table(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind is None or "alter" not in view.kind:
        return
    for kind, old, new in _relation_renames(view):
        if kind == "table" and context.schema.created_in_plan(old):
            continue
        yield (
            f"renames {kind} {old} to {new}: the previous release still queries {old} "
            f'and fails with "relation does not exist" until it is replaced'
        )


@rule(
    "SO302",
    "rename-column",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Renaming a column breaks every client still using the old name.",
    rationale="""
        ALTER TABLE ... RENAME COLUMN is instant, and that is the problem: the
        previous release, still running during a rolling deploy, selects,
        inserts and updates the old column name and fails with "column does not
        exist" until its last instance is gone. ORMs that select every mapped
        column fail on every query of the table, not only those using the column.
    """,
    safer="""
        Expand and contract: ALTER TABLE t ADD COLUMN new_name <type>; keep both in
        step (write both from the application, or a trigger), backfill in batches
        (UPDATE t SET new_name = old_name WHERE id BETWEEN ...), switch readers to
        new_name, and drop old_name in a later release.
    """,
    triggers=[
        "ALTER TABLE users RENAME COLUMN email TO email_address",
        "alter table public.users rename email to email_address",
        'ALTER TABLE patients RENAME COLUMN "DOB" TO date_of_birth',
    ],
    passes=[
        "CREATE TABLE imports (a text); ALTER TABLE imports RENAME COLUMN a TO b",
        "ALTER TABLE users RENAME TO people",
        "ALTER TABLE users ADD COLUMN email_address text",
    ],
    kinds=("*alter*",),
)
def rename_column(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind is None or "alter" not in view.kind:
        return
    for table, old, new in _column_renames(view):
        if context.schema.created_in_plan(table):
            continue
        yield (
            f"renames column {table}.{old} to {new}: the previous release still reads and "
            f'writes {old} and fails with "column does not exist" until it is replaced'
        )


@rule(
    "SO303",
    "rename-schema",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Renaming a schema breaks every qualified name and search_path that uses it.",
    rationale="""
        ALTER SCHEMA ... RENAME TO changes the qualified name of every table,
        view, function and type in the schema at once. The previous release
        (qualified names, search_path settings on roles or connection strings)
        stops finding any of them until it is replaced.
    """,
    safer="""
        Do not rename a schema under a running application. Create the new schema,
        move objects one at a time behind compatibility views, or schedule the
        rename for a maintenance window with the application stopped.
    """,
    triggers=[
        "ALTER SCHEMA billing RENAME TO invoicing",
        'ALTER SCHEMA "Clinical" RENAME TO clinical',
    ],
    passes=["ALTER SCHEMA billing OWNER TO billing_admin", "CREATE SCHEMA invoicing"],
    kinds=("alter_schema_rename",),
)
def rename_schema(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind == "alter_schema_rename" and view.shape is not None:
        new = view.shape.args[0] if view.shape.args else "?"
        yield (
            f"renames schema {view.shape.relation} to {new}: every object in it moves, and "
            f"the previous release no longer finds any of them by their qualified names"
        )


@rule(
    "SO304",
    "rename-constraint",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Renaming a constraint breaks code that recognises violations by constraint name.",
    rationale="""
        Applications map integrity errors to user-facing messages by the
        constraint name PostgreSQL reports (``users_email_key`` -> "this email is
        already registered"), and ORMs name constraints in ON CONFLICT ON
        CONSTRAINT clauses. After the rename the previous release gets names it
        does not know: ON CONFLICT ON CONSTRAINT fails outright, and error
        handling falls through to a generic failure.
    """,
    safer="""
        Keep the old constraint name until no running code refers to it. If the
        name must change, ship code that accepts both names first, then rename in
        a later release.
    """,
    triggers=[
        "ALTER TABLE users RENAME CONSTRAINT users_email_key TO users_email_uniq",
        "ALTER TABLE IF EXISTS billing.invoices RENAME CONSTRAINT inv_fk TO invoices_patient_fk",
    ],
    passes=[
        "CREATE TABLE t (a int CONSTRAINT t_a_check CHECK (a > 0));\n"
        "ALTER TABLE t RENAME CONSTRAINT t_a_check TO t_a_positive",
        "ALTER TABLE users VALIDATE CONSTRAINT users_email_key",
    ],
    kinds=("alter_table_rename_constraint", "alter_foreign_table_rename_constraint"),
)
def rename_constraint(view: StatementView, context: Context) -> Iterator[str]:
    if view.shape is None or view.kind not in (
        "alter_table_rename_constraint",
        "alter_foreign_table_rename_constraint",
    ):
        return
    table = view.shape.relation or "?"
    if context.schema.created_in_plan(table):
        return
    old = view.shape.args[0] if view.shape.args else "?"
    yield (
        f"renames constraint {old} on {table} to {_name_after_to(view) or '?'}: the previous "
        f"release's ON CONFLICT ON CONSTRAINT clauses and error handling still use {old}"
    )


@rule(
    "SO305",
    "rename-enum-value",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Renaming an enum value breaks clients that still send or expect the old label.",
    rationale="""
        ALTER TYPE ... RENAME VALUE (PostgreSQL 10+) changes the label of an enum
        value in every row at once. The previous release still writes the old
        label, which is now "invalid input value for enum", and its code that
        compares or maps the old label no longer matches what it reads.
    """,
    safer="""
        Add the new label (ALTER TYPE t ADD VALUE 'new', committed on its own),
        ship code that reads both labels and writes the new one, migrate rows
        (UPDATE ... SET c = 'new' WHERE c = 'old' in batches), and stop accepting
        the old label in a later release.
    """,
    triggers=[
        "ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy'",
        "alter type public.order_status rename value 'canceled' to 'cancelled'",
    ],
    passes=["ALTER TYPE mood ADD VALUE 'meh'", "ALTER TYPE mood RENAME TO feeling_old"],
    kinds=("alter_type_rename_value",),
)
def rename_enum_value(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind == "alter_type_rename_value" and view.shape is not None:
        old = view.shape.args[0] if view.shape.args else "?"
        new = _string_after_to(view) or "?"
        yield (
            f"renames value '{old}' of enum {view.shape.relation} to '{new}': the previous "
            f"release still writes '{old}', which is rejected from now on"
        )


@rule(
    "SO314",
    "rename-type",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Renaming a type breaks casts and declarations that use the old name.",
    rationale="""
        ALTER TYPE ... RENAME TO changes the name every client must use in casts
        (``'paid'::order_status``), function signatures and ORM type
        registrations (asyncpg and psycopg codecs are looked up by type name).
        The previous release keeps using the old name and fails with "type does
        not exist" until it is replaced.
    """,
    safer="""
        Keep the old type name until no running code uses it; if a type must be
        replaced, create the new type under a new name, move columns to it in a
        later release, and drop the old one after that.
    """,
    triggers=[
        "ALTER TYPE order_status RENAME TO order_status_old",
        'ALTER TYPE public."Mood" RENAME TO mood',
    ],
    passes=["ALTER TYPE order_status ADD VALUE 'refunded'", "ALTER TYPE order_status OWNER TO app"],
    kinds=("alter_type_rename",),
)
def rename_type(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind == "alter_type_rename" and view.shape is not None:
        new = view.shape.args[0] if view.shape.args else "?"
        yield (
            f"renames type {view.shape.relation} to {new}: casts and codecs of the previous "
            f"release still name {view.shape.relation}"
        )
