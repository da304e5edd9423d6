"""SO214: an explicit LOCK TABLE in a mode that blocks the application's writes or reads."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules._locks import is_new
from runner.plan.rules.base import Context, Example, StatementView, rule

# Modes that let ordinary SELECT / INSERT / UPDATE / DELETE through (they only
# conflict with DDL, VACUUM FULL and the like).
_HARMLESS_MODES = frozenset(
    {"ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE"}
)
_BLOCKS = {
    "SHARE": "writes",
    "SHARE ROW EXCLUSIVE": "writes",
    "EXCLUSIVE": "writes and SELECT ... FOR UPDATE",
    "ACCESS EXCLUSIVE": "reads and writes",
}


_KINDS = frozenset({"lock"})


@rule(
    "SO214",
    "lock-table",
    Category.LOCKING,
    Severity.WARNING,
    summary="LOCK TABLE in SHARE mode or stronger blocks the application until commit.",
    rationale="""
        An explicit LOCK TABLE holds its lock until the end of the transaction,
        and everything the migration does after it extends that time. SHARE and
        SHARE ROW EXCLUSIVE block every write, EXCLUSIVE also row locks, and
        ACCESS EXCLUSIVE (the default when no mode is given) blocks reads as
        well; while the lock waits for running transactions, every query queued
        behind it waits too. ACCESS SHARE, ROW SHARE, ROW EXCLUSIVE and SHARE
        UPDATE EXCLUSIVE let ordinary reads and writes through and are not
        reported, nor are tables created earlier in the plan.
    """,
    safer="""
        Lock only as strongly and as briefly as the migration needs: SET
        lock_timeout = '2s'; LOCK TABLE t IN SHARE UPDATE EXCLUSIVE MODE; (or no
        explicit lock at all) and commit right after the statements that need it.
    """,
    triggers=[
        "BEGIN;\nLOCK TABLE orders;\nCOMMIT",
        "BEGIN;\nlock table only public.orders in share row exclusive mode nowait;\nCOMMIT",
        "BEGIN;\nLOCK orders, customers IN EXCLUSIVE MODE;\nCOMMIT",
    ],
    passes=[
        "BEGIN;\nLOCK TABLE orders IN ACCESS SHARE MODE;\nCOMMIT",
        "BEGIN;\nLOCK TABLE orders IN SHARE UPDATE EXCLUSIVE MODE;\nCOMMIT",
        Example("BEGIN;\nCREATE TABLE staging (id int);\nLOCK TABLE staging;\nCOMMIT"),
    ],
    kinds=_KINDS,
)
def lock_table(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if view.kind != "lock" or view.shape is None:
        return
    mode = view.shape.args[0] if view.shape.args else "ACCESS EXCLUSIVE"
    if mode in _HARMLESS_MODES:
        return
    table = view.shape.relation or "?"
    several = any(w.text == "," for w in words(view.raw.tokens))
    if is_new(context, table) and not several:
        return
    target = f"{table} and the other tables listed" if several else table
    blocks = _BLOCKS.get(mode, "reads and writes")
    yield f"locks {target} IN {mode} MODE: blocks {blocks} until the transaction ends"
