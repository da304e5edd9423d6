"""The schema as the analysis knows it at each point of the plan.

It starts from the database's catalog when one was read (``pg_attribute``,
through ``runner.dryrun.facts`` at the edge) and follows the plan's own statements:
a table created earlier in the plan is new and empty, a column's type is the
one the last statement gave it. Names are kept as PostgreSQL folds them
(unquoted lower-cased, ``public.`` dropped) so ``Patients`` and
``public.patients`` are one table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError


def relation_key(name: str) -> str:
    return name[len("public.") :] if name.startswith("public.") else name


@dataclass
class TableState:
    created_in_plan: bool
    # column -> type; None when the type is not known (CREATE TABLE AS, ...).
    columns: dict[str, exp.DataType | None] = field(default_factory=dict)
    # CHECK (column IS NOT NULL) constraints the plan added: name -> (column, validated).
    # A validated one lets SET NOT NULL skip its full scan (PostgreSQL 12+).
    not_null_checks: dict[str, tuple[str, bool]] = field(default_factory=dict)


@dataclass
class SchemaState:
    tables: dict[str, TableState] = field(default_factory=dict)
    # True when a database catalog seeded the state: an unknown table then
    # really is unknown rather than merely not described.
    seeded_from_catalog: bool = False

    @classmethod
    def from_catalog(cls, columns: Mapping[str, Mapping[str, str]]) -> SchemaState:
        state = cls(seeded_from_catalog=bool(columns))
        for table, cols in columns.items():
            state.tables[relation_key(table)] = TableState(
                created_in_plan=False,
                columns={name: parse_type(type_) for name, type_ in cols.items()},
            )
        return state

    def table(self, name: str) -> TableState | None:
        return self.tables.get(relation_key(name))

    def created_in_plan(self, name: str) -> bool:
        table = self.table(name)
        return table is not None and table.created_in_plan

    def column_type(self, table: str, column: str) -> exp.DataType | None:
        state = self.table(table)
        return None if state is None else state.columns.get(column)

    # -- changes, called by the analysis after each statement ---------------------

    def create_table(self, name: str, columns: Mapping[str, exp.DataType | None]) -> None:
        self.tables[relation_key(name)] = TableState(
            created_in_plan=True, columns={c: _detached(t) for c, t in columns.items()}
        )

    def drop_table(self, name: str) -> None:
        self.tables.pop(relation_key(name), None)

    def rename_table(self, old: str, new: str) -> None:
        state = self.tables.pop(relation_key(old), None)
        if state is not None:
            self.tables[relation_key(new)] = state
        else:
            # A table the plan knows nothing about now holds the name.
            self.tables.pop(relation_key(new), None)

    def set_column(self, table: str, column: str, type_: exp.DataType | None) -> None:
        state = self.tables.setdefault(relation_key(table), TableState(created_in_plan=False))
        state.columns[column] = _detached(type_)

    def drop_column(self, table: str, column: str) -> None:
        state = self.table(table)
        if state is not None:
            state.columns.pop(column, None)

    def rename_column(self, table: str, old: str, new: str) -> None:
        state = self.table(table)
        if state is not None and old in state.columns:
            state.columns[new] = state.columns.pop(old)

    def add_not_null_check(self, table: str, name: str, column: str, validated: bool) -> None:
        state = self.tables.setdefault(relation_key(table), TableState(created_in_plan=False))
        state.not_null_checks[name] = (column, validated)

    def validate_check(self, table: str, name: str) -> None:
        state = self.table(table)
        if state is not None and name in state.not_null_checks:
            state.not_null_checks[name] = (state.not_null_checks[name][0], True)

    def drop_check(self, table: str, name: str) -> None:
        state = self.table(table)
        if state is not None:
            state.not_null_checks.pop(name, None)

    def has_validated_not_null_check(self, table: str, column: str) -> bool:
        state = self.table(table)
        return state is not None and (column, True) in state.not_null_checks.values()


def _detached(type_: exp.DataType | None) -> exp.DataType | None:
    """A copy without the statement around it: a type node links to its parent, and
    kept as it is it would keep the whole syntax tree of every CREATE TABLE and
    ADD COLUMN of the plan alive (lint streams files of any size)."""
    return None if type_ is None else type_.copy()


def parse_type(text: str) -> exp.DataType | None:
    """A type as ``format_type()`` or a migration writes it, or None if unreadable.

    Names sqlglot does not know (``cidr``, ``citext``, an enum or a domain) come
    back as user-defined types, as ``ALTER ... TYPE cidr`` parses them; and
    ``bit varying(n)``, which sqlglot would read as plain ``bit``, as ``varbit(n)``.
    """
    spelled = " ".join(text.split())
    if spelled.lower().startswith("bit varying"):
        spelled = "varbit" + spelled[len("bit varying") :]
    try:
        return exp.DataType.build(spelled, dialect="postgres")
    except (ParseError, ValueError):
        pass
    try:
        cast = sqlglot.parse_one(f"CAST(NULL AS {spelled})", read="postgres")
    except (ParseError, TokenError, ValueError):
        return None
    if isinstance(cast, exp.Cast) and isinstance(cast.this, exp.Null):
        to = cast.args.get("to")
        return to if isinstance(to, exp.DataType) else None
    return None
