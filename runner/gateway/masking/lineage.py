"""Which output columns of a statement may carry masked data, when the server cannot
say (RowDescription gives table OID 0 for a computed column: ``ssn || ''``,
``upper(ssn)``, ``row_to_json(p)``, ``string_agg(ssn, ',')``, a scalar subquery).

A taint analysis over sqlglot's tree, by name, that over-approximates rather than
resolves: a column reference is tainted when its name is the name of a masked column
of any relation the statement reads (or of a view column whose own lineage is
tainted), or an alias given anywhere in the statement to a tainted expression (a
subquery's or CTE's output, its column list), or the name of a relation or alias
with masked columns (a whole-row reference: ``row_to_json(p)``, ``p.*``); a call of a
function defined in a schema of the database's own (it may read anything) or a ``*``
inside an expression taints when the statement reads masked data at all. An output
expression is masked when anything in it is tainted. Where the positions cannot be
matched to the select list (``SELECT *`` next to a computed column, a text sqlglot
cannot read, ``FETCH``, ``EXECUTE``), the whole statement's taint applies to every
computed column: fail closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp

from .catalog import Catalog, Relation
from .config import MaskRule

logging.getLogger("sqlglot").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Taint:
    """Where masked data comes from: the source column (schema.table.column, or a
    description) and the rule that masks it."""

    source: str
    rule: MaskRule


@dataclass(frozen=True)
class StatementLineage:
    # The taint of each output column of the statement's result, in order; None:
    # the positions are not known (every computed column takes ``any``).
    outputs: tuple[Taint | None, ...] | None
    # The first taint found anywhere in the statement (None: it reads no masked data).
    any: Taint | None
    # The text could not be analysed at all (FETCH, EXECUTE, unreadable): callers
    # mask every computed column when the database has masked columns at all.
    opaque: bool = False
    # The statement writes (INSERT, UPDATE, DELETE, MERGE, CREATE ... AS, SELECT INTO)
    # and something in it reads a masked column: it could copy PHI where no rule
    # masks it (the engine makes it need approval for a masked role).
    writes_masked: Taint | None = None


# The masked columns of a relation: lowercase column name -> taint.
MaskedOf = Callable[[Relation], Mapping[str, Taint]]

_UNKNOWN_RULE = MaskRule("lineage-unknown", names=("*",))


def analyse(sql: str, catalog: Catalog, masked_of: MaskedOf) -> StatementLineage:
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except Exception:
        return StatementLineage(None, None, opaque=True)
    if not isinstance(tree, exp.Expression) or isinstance(tree, exp.Command):
        return StatementLineage(None, None, opaque=True)
    return _Analysis(tree, catalog, masked_of).run()


class _Analysis:
    def __init__(self, tree: exp.Expression, catalog: Catalog, masked_of: MaskedOf) -> None:
        self.tree = tree
        self.catalog = catalog
        self.masked_of = masked_of
        self.names: dict[str, Taint] = {}  # tainted column names
        self.rows: dict[str, Taint] = {}  # tainted relation names / aliases (whole rows)
        self.first: Taint | None = None

    def run(self) -> StatementLineage:
        tree = self.tree
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            name = table.name
            if not name or (not table.db and name.lower() in ctes):
                continue
            for relation in self.catalog.find(table.db or None, name):
                masked = self.masked_of(relation)
                if not masked:
                    continue
                for column, taint in masked.items():
                    self.names.setdefault(column, taint)
                    if self.first is None:
                        self.first = taint
                whole = next(iter(masked.values()))
                self.rows.setdefault(name.lower(), whole)
                if table.alias:
                    self.rows.setdefault(table.alias.lower(), whole)
        if self.first is None and not self._calls_own_function(tree):
            # Nothing masked is read: every output is clean.
            return StatementLineage(None, None)
        self._propagate()
        outputs = self._outputs()
        any_taint = self.first or Taint("a function of the database's own", _UNKNOWN_RULE)
        writes = None
        if _writes(tree):
            writes = self.taint_of(tree)
        return StatementLineage(outputs, any_taint, writes_masked=writes)

    def _calls_own_function(self, node: exp.Expression) -> bool:
        functions = self.catalog.functions
        if not functions:
            return False
        for call in node.find_all(exp.Func):
            name = call.name if isinstance(call, exp.Anonymous) else call.key
            if name and name.lower() in functions:
                return True
        return False

    def taint_of(self, node: exp.Expression) -> Taint | None:
        for sub in node.walk():
            if isinstance(sub, exp.Column):
                if isinstance(sub.this, exp.Star):
                    table = sub.table.lower()
                    if table in self.rows:
                        return self.rows[table]
                    if self.first is not None:
                        return self.first
                    continue
                name = sub.name.lower()
                if name in self.names:
                    return self.names[name]
                if not sub.table and name in self.rows:
                    return self.rows[name]  # a whole-row reference: row_to_json(p)
                if sub.table and sub.table.lower() in self.rows and name in self.names:
                    return self.names[name]
            elif isinstance(sub, exp.Star):
                if not isinstance(sub.parent, exp.Count) and self.first is not None:
                    return self.first
            elif isinstance(sub, exp.Func):
                functions = self.catalog.functions
                name = sub.name if isinstance(sub, exp.Anonymous) else sub.key
                if functions and name and name.lower() in functions:
                    return self.first or Taint(f"function {name}()", _UNKNOWN_RULE)
        return None

    def _propagate(self) -> None:
        """Aliases of tainted expressions, and the outputs and names of tainted
        subqueries and CTEs, are tainted too (until nothing changes)."""
        for _ in range(8):
            changed = False
            for aliased in self.tree.find_all(exp.Alias):
                name = aliased.alias.lower()
                if name and name not in self.names:
                    taint = self.taint_of(aliased.this)
                    if taint is not None:
                        self.names[name] = taint
                        changed = True
            for table_alias in self.tree.find_all(exp.TableAlias):
                # A set-returning source fed masked data (unnest(array[ssn]) u, a
                # function in FROM): its alias and column names carry it.
                source = table_alias.parent
                if not isinstance(source, exp.Unnest | exp.Table | exp.Lateral):
                    continue
                taint = self.taint_of(source)
                if taint is None:
                    continue
                for name in [table_alias.name, *(c.name for c in table_alias.columns)]:
                    key = name.lower()
                    if key and key not in self.names:
                        self.names[key] = taint
                        self.rows.setdefault(key, taint)
                        changed = True
            for node in self.tree.find_all(exp.Subquery, exp.CTE):
                body = node.this
                if not isinstance(body, exp.Query):
                    continue
                taint = None
                for projection in _projections(body):
                    taint = self.taint_of(projection)
                    if taint is not None:
                        break
                if taint is None:
                    continue
                alias = node.args.get("alias")
                name = node.alias_or_name.lower() if alias is not None else ""
                if name and name not in self.rows:
                    self.rows[name] = taint
                    changed = True
                if isinstance(alias, exp.TableAlias):
                    for column in alias.columns:
                        cname = column.name.lower()
                        if cname not in self.names:
                            self.names[cname] = taint
                            changed = True
            if not changed:
                return

    def _outputs(self) -> tuple[Taint | None, ...] | None:
        tree = self.tree
        if isinstance(tree, exp.Select | exp.SetOperation):
            branches = _branches(tree)
        else:
            returning = tree.args.get("returning")
            branches = [returning.expressions] if isinstance(returning, exp.Returning) else []
        if not branches:
            return None
        width = len(branches[0])
        if any(len(b) != width for b in branches):
            return None
        outputs: list[Taint | None] = []
        for i in range(width):
            taint: Taint | None = None
            for branch in branches:
                projection = branch[i]
                if isinstance(projection, exp.Star) or (
                    isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
                ):
                    return None  # positions after a * are not known here
                taint = taint or self.taint_of(projection)
            outputs.append(taint)
        return tuple(outputs)


def _projections(query: Any) -> list[exp.Expression]:
    return [p for branch in _branches(query) for p in branch]


def _branches(query: Any) -> list[list[exp.Expression]]:
    if isinstance(query, exp.SetOperation):
        return _branches(query.this) + _branches(query.expression)
    if isinstance(query, exp.Subquery):
        return _branches(query.this)
    if isinstance(query, exp.Select):
        return [list(query.expressions)]
    return []


def _writes(tree: exp.Expression) -> bool:
    if isinstance(tree, exp.Insert | exp.Update | exp.Delete | exp.Merge):
        return True
    if isinstance(tree, exp.Create):
        return tree.expression is not None
    return isinstance(tree, exp.Select) and tree.args.get("into") is not None
