"""SO401: a strong lock on an existing table, taken with no lock_timeout in force.

Advisory: apply sets its own lock_timeout unless the configuration turns it
off, so this rule speaks only when neither apply nor the migration bounds the
wait.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, Example, StatementView, rule, table_name
from runner.plan.rules.create_trigger import trigger_target

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE = "SHARE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"

# ALTER TABLE forms (token shapes) that take less than ACCESS EXCLUSIVE.
_WEAK_ALTER_SHAPES = {
    "alter_table_validate_constraint": None,  # SHARE UPDATE EXCLUSIVE
    "alter_table_column_set_statistics": None,
    "alter_table_cluster_on": None,
    "alter_table_attach_partition": None,  # SHARE UPDATE EXCLUSIVE on the parent (PG 12+)
    "alter_table_enable_trigger": SHARE_ROW_EXCLUSIVE,
    "alter_table_disable_trigger": SHARE_ROW_EXCLUSIVE,
}
# LOCK TABLE modes that block writers (and so queue them while waiting).
_STRONG_LOCK_MODES = frozenset({SHARE, SHARE_ROW_EXCLUSIVE, "EXCLUSIVE", ACCESS_EXCLUSIVE})


def _alter_table_lock(view: StatementView) -> str:
    """ADD FOREIGN KEY alone takes SHARE ROW EXCLUSIVE; every other action ACCESS EXCLUSIVE."""
    actions = view.alter_actions()
    if actions and all(
        isinstance(a, exp.AddConstraint)
        and all(c.find(exp.ForeignKey) is not None for c in a.expressions)
        for a in actions
    ):
        return SHARE_ROW_EXCLUSIVE
    return ACCESS_EXCLUSIVE


def _locks(view: StatementView, context: Context) -> Iterator[tuple[str, str]]:
    """(relation, lock mode) for each existing relation the statement locks strongly."""
    kind = view.kind or ""
    node = view.node

    def not_created(name: str) -> bool:
        return not context.schema.created_in_plan(name)

    if kind == "alter_table" and isinstance(node, exp.Alter):
        table = table_name(node.this)
        if not_created(table):
            yield table, _alter_table_lock(view)
    elif view.shape is not None and kind.startswith(("alter_table_", "alter_materialized_view_")):
        mode = _WEAK_ALTER_SHAPES.get(kind, ACCESS_EXCLUSIVE)
        if kind.endswith("_detach_partition") and "concurrently" in view.shape.flags:
            mode = None  # SHARE UPDATE EXCLUSIVE (PG 14+)
        table = view.shape.relation or "?"
        if mode is not None and not_created(table):
            yield table, mode
    elif kind == "drop_table" and isinstance(node, exp.Drop):
        for target in node.args.get("tables") or []:
            if not_created(table_name(target)):
                yield table_name(target), ACCESS_EXCLUSIVE
    elif kind == "drop_index":
        if isinstance(node, exp.Drop) and not node.args.get("concurrently"):
            for target in node.args.get("tables") or []:
                yield f"the table of index {table_name(target)}", ACCESS_EXCLUSIVE
        elif view.shape is not None and "concurrently" not in view.shape.flags:
            yield f"the table of index {view.shape.relation}", ACCESS_EXCLUSIVE
    elif kind == "truncate" and isinstance(node, exp.TruncateTable):
        for target in node.expressions:
            if not_created(table_name(target)):
                yield table_name(target), ACCESS_EXCLUSIVE
    elif kind == "create_index" and isinstance(node, exp.Create):
        index = node.this
        indexed = index.args.get("table") if isinstance(index, exp.Index) else None
        if (
            not node.args.get("concurrently")
            and isinstance(indexed, exp.Table)
            and not_created(table_name(indexed))
        ):
            yield table_name(indexed), SHARE
    elif kind == "create_trigger" and isinstance(node, exp.Create):
        target = trigger_target(node)
        if target is not None and not_created(table_name(target)):
            yield table_name(target), SHARE_ROW_EXCLUSIVE
    elif view.shape is None:
        return
    elif kind == "vacuum" and "full" in view.shape.flags:
        yield "every table it names (all tables when none)", ACCESS_EXCLUSIVE
    elif kind == "cluster":
        yield view.shape.relation or "every previously clustered table", ACCESS_EXCLUSIVE
    elif kind == "refresh_materialized_view" and "concurrently" not in view.shape.flags:
        yield view.shape.relation or "?", ACCESS_EXCLUSIVE
    elif kind == "reindex" and "concurrently" not in view.shape.flags:
        target = view.shape.args[0] if view.shape.args else ""
        mode = ACCESS_EXCLUSIVE if target == "index" else SHARE
        yield f"{target} {view.shape.relation}".strip(), mode
    elif kind == "lock":
        mode = view.shape.args[0] if view.shape.args else ACCESS_EXCLUSIVE
        if mode in _STRONG_LOCK_MODES and not_created(view.shape.relation or "?"):
            yield view.shape.relation or "?", mode


@rule(
    "SO401",
    "missing-lock-timeout",
    Category.HYGIENE,
    Severity.WARNING,
    summary="A strong lock on an existing table is requested with no lock_timeout in force.",
    rationale="""
        ALTER TABLE, DROP TABLE, TRUNCATE, VACUUM FULL, CLUSTER, REFRESH
        MATERIALIZED VIEW and LOCK take an ACCESS EXCLUSIVE lock; CREATE INDEX and
        REINDEX take SHARE (no writes), CREATE TRIGGER SHARE ROW EXCLUSIVE. If one
        long transaction holds any lock on
        the table, the DDL waits, and every query that arrives after it queues
        behind the DDL: even a "instant" ALTER TABLE then stalls all reads and
        writes of the table for as long as that transaction lasts. A
        lock_timeout bounds the wait: the statement fails fast and can be
        retried. Signoff's apply sets one unless the configuration turns it off;
        this is reported only when neither apply nor the migration sets one.
    """,
    safer="""
        SET lock_timeout = '2s'; at the top of the migration (or SET LOCAL
        lock_timeout = '2s'; inside its transaction), and retry on timeout; or keep
        apply's own lock_timeout enabled.
    """,
    triggers=[
        Example("ALTER TABLE users ADD COLUMN locale text", apply_lock_timeout=False),
        Example("TRUNCATE audit_staging", apply_lock_timeout=False),
        Example("VACUUM FULL orders", apply_lock_timeout=False),
        Example("LOCK TABLE orders IN EXCLUSIVE MODE", apply_lock_timeout=False),
        Example(
            "CREATE TRIGGER t_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION f()",
            apply_lock_timeout=False,
        ),
        Example(
            "SET lock_timeout = '2s';\nSET lock_timeout = 0;\nDROP INDEX idx_orders_user_id",
            apply_lock_timeout=False,
        ),
        Example(
            "BEGIN;\nSET LOCAL lock_timeout = '2s';\nCOMMIT;\nALTER TABLE users DROP COLUMN bio",
            apply_lock_timeout=False,
        ),
    ],
    passes=[
        Example(
            "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN locale text",
            apply_lock_timeout=False,
        ),
        Example("ALTER TABLE users ADD COLUMN locale text", apply_lock_timeout=True),
        Example(
            "BEGIN;\nSET LOCAL lock_timeout = '1s';\n"
            "ALTER TABLE users ADD COLUMN locale text;\nCOMMIT",
            apply_lock_timeout=False,
        ),
        Example(
            "CREATE TABLE notes (id bigint);\nALTER TABLE notes ADD COLUMN body text",
            apply_lock_timeout=False,
        ),
        Example(
            "CREATE INDEX CONCURRENTLY idx_orders_user_id ON orders (user_id)",
            apply_lock_timeout=False,
        ),
        Example(
            "ALTER TABLE users VALIDATE CONSTRAINT users_email_check", apply_lock_timeout=False
        ),
        Example("SELECT * FROM users", apply_lock_timeout=False),
        Example(
            "CREATE TABLE notes (id bigint);\n"
            "CREATE TRIGGER notes_audit AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION f()",
            apply_lock_timeout=False,
        ),
    ],
)
def missing_lock_timeout(view: StatementView, context: Context) -> Iterator[str]:
    if context.has_lock_timeout or view.kind is None:
        return
    for relation, mode in _locks(view, context):
        article = "an" if mode[0] in "AEIOU" else "a"
        yield (
            f"takes {article} {mode} lock on {relation} with no lock_timeout in force: while "
            f"it waits behind a long transaction, every later query on the table waits behind it"
        )
