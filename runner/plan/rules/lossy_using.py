"""SO124: ALTER COLUMN ... TYPE ... USING an expression that truncates or computes away the values.

SO114 judges a USING clause that is the column itself under casts, and one that
does not read the column at all (USING NULL, USING 0). A computed conversion it
leaves to the author; this rule reads it for what certainly loses data: a
truncating or rounding function applied to the column (left, substr, round,
date_trunc, md5...) and a cast to a length-bounded type anywhere in it.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, ident, rule, table_name

_T = exp.DataType.Type
_BOUNDED = frozenset({_T.VARCHAR, _T.CHAR, _T.NCHAR, _T.NVARCHAR, _T.BIT})
# Functions whose result keeps only part of their argument (or none of it, for a
# hash): what they drop cannot be recovered from the new column.
_LOSSY_FUNCTIONS = {
    "left": "keeps only the first characters",
    "right": "keeps only the last characters",
    "substr": "keeps only part of each value",
    "substring": "keeps only part of each value",
    "split_part": "keeps only one part of each value",
    "overlay": "overwrites part of each value",
    "trunc": "truncates each value",
    "truncate": "truncates each value",
    "round": "rounds each value",
    "floor": "rounds each value down",
    "ceil": "rounds each value up",
    "ceiling": "rounds each value up",
    "date_trunc": "truncates each timestamp",
    "datetrunc": "truncates each timestamp",
    "timestamp_trunc": "truncates each timestamp",
    "datetime_trunc": "truncates each timestamp",
    "md5": "replaces each value with its hash",
    "sha224": "replaces each value with its hash",
    "sha256": "replaces each value with its hash",
    "sha384": "replaces each value with its hash",
    "sha512": "replaces each value with its hash",
    "lower": "folds the case of each value",
    "upper": "folds the case of each value",
    "initcap": "folds the case of each value",
    "abs": "drops the sign of each value",
    "sign": "keeps only the sign of each value",
}


def _name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _reads(node: exp.Expression, column: str) -> bool:
    return any(ident(c.this) == column for c in node.find_all(exp.Column))


def using_loss(column: str, using: exp.Expression) -> str | None:
    """How ``using`` loses the column's data, or None when nothing certain is seen."""
    if not _reads(using, column):
        return None  # SO114 reports a USING that does not read the column
    for func in using.find_all(exp.Func):
        what = _LOSSY_FUNCTIONS.get(_name(func))
        if what is not None and isinstance(func, exp.Expression) and _reads(func, column):
            return f"USING {func.sql(dialect='postgres')} {what}"
    inner = using
    while isinstance(inner, exp.Cast | exp.Paren):
        inner = inner.this
    if isinstance(inner, exp.Column):
        return None  # the column under casts alone: SO114's to judge, with the old type
    for cast in using.find_all(exp.Cast):
        to = cast.args.get("to")
        if isinstance(to, exp.DataType) and to.this in _BOUNDED and to.expressions:
            shown = to.sql(dialect="postgres")
            return f"the cast to {shown} in USING silently truncates longer values"
    return None


@rule(
    "SO124",
    "lossy-using-expression",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="ALTER COLUMN ... TYPE ... USING an expression that truncates, rounds or hashes.",
    rationale="""
        The USING expression of ALTER COLUMN ... TYPE computes every stored
        value anew, and what it drops is gone once the statement commits:
        USING left(ssn, 3) or substr(...) keeps part of each value, round(),
        trunc() and date_trunc() round it, md5() replaces it with a hash,
        lower() folds its case, and a cast to varchar(n) or char(n) anywhere
        in the expression truncates longer strings without an error. Nothing
        else in the plan says the data is being cut; a reviewer should see it.
        USING the column under plain casts is judged by SO114.
    """,
    safer="""
        Add a new column for the derived value and keep the original ('ALTER
        TABLE patients ADD COLUMN ssn_prefix text; UPDATE patients SET ssn_prefix
        = left(ssn, 3) WHERE id BETWEEN 1 AND 10000;'), dropping the old column
        in a later, reviewed release if it really must go.
    """,
    triggers=[
        "ALTER TABLE patients ALTER COLUMN ssn TYPE varchar(3) USING left(ssn, 3)",
        "ALTER TABLE patients ALTER COLUMN ssn TYPE text USING substr(ssn, 1, 4)",
        "ALTER TABLE visits ALTER COLUMN seen_at TYPE timestamptz USING date_trunc('day', seen_at)",
        "ALTER TABLE prices ALTER COLUMN amount TYPE numeric USING round(amount)",
        "ALTER TABLE patients ALTER COLUMN email TYPE text USING md5(email)",
        "ALTER TABLE patients ALTER COLUMN name TYPE text USING (name || '')::varchar(8)",
        "ALTER TABLE patients ALTER COLUMN name SET DATA TYPE text USING upper(trim(name))",
    ],
    passes=[
        "ALTER TABLE patients ALTER COLUMN mrn TYPE bigint USING mrn::bigint",
        "ALTER TABLE patients ALTER COLUMN name TYPE text USING name || ''",
        "ALTER TABLE orders ALTER COLUMN status TYPE order_status USING status::text::order_status",
        "ALTER TABLE patients ALTER COLUMN born TYPE date USING to_date(born, 'YYYY-MM-DD')",
        "CREATE TABLE scratch (ssn text);\n"
        "ALTER TABLE scratch ALTER COLUMN ssn TYPE text USING left(ssn, 3)",
    ],
    kinds=("alter_table",),
)
def lossy_using(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind != "alter_table" or not isinstance(view.node, exp.Alter):
        return
    table = table_name(view.node.this)
    if context.schema.created_in_plan(table):
        return
    for action in view.alter_actions():
        if not isinstance(action, exp.AlterColumn):
            continue
        using = action.args.get("using")
        if not isinstance(using, exp.Expression):
            continue
        column = ident(action.this)
        reason = using_loss(column, using)
        if reason is not None:
            yield f"changes {table}.{column}: {reason}"
