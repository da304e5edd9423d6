"""The schema as the analysis knows it at each point of the plan.

It starts from the database's catalog when one was read (``pg_attribute``,
through ``runner.dryrun.facts`` at the edge) and follows the plan's own statements:
a table created earlier in the plan is new and empty, a column's type is the
one the last statement gave it.

A table is known by its schema-qualified identity (``public.patients``,
``other."Visits"``: unquoted parts folded, a quoted part kept unless PostgreSQL
would fold it to the same), and an unqualified name is resolved as PostgreSQL
resolves it: ``pg_temp`` first, then each schema of the session's search_path
(``search_path``, kept in step with ``Context.search_path`` by the analysis). So
``Patients`` and ``public.patients`` are one table, and with ``search_path =
other, public`` a ``CREATE TABLE t`` makes ``other.t``, never ``public.t``.

The catalog is kept apart (``base``, never changed) from what the plan changed
(``overlay``; ``None``: gone), and a changed table is replaced, never edited in
place, so a ``snapshot`` (what the gateway takes at BEGIN and SAVEPOINT to undo a
rollback) copies only the plan's own changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

TEMP_SCHEMA = "pg_temp"
# The schema of a name no known search_path resolves (an unknown path): nothing the
# session made is ever found there.
UNKNOWN_SCHEMA = "?"


def relation_key(name: str) -> str:
    """A name as the plan wrote it, ``public.`` dropped (for names compared within
    one statement's reading, not for identity: see ``SchemaState.identity``)."""
    return name[len("public.") :] if name.startswith("public.") else name


def split_name(name: str) -> list[str]:
    """``other."A.b".t`` -> ``['other', '"A.b"', 't']``: the dots outside quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in name:
        if char == '"':
            quoted = not quoted
        if char == "." and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _part(part: str) -> str:
    """One part of a name as PostgreSQL tells names apart: ``"users"`` is ``users``."""
    if len(part) > 1 and part.startswith('"') and part.endswith('"'):
        inner = part[1:-1]
        if inner and inner == inner.lower() and _plain_identifier(inner):
            return inner
        return part
    return part.lower()


def _plain_identifier(text: str) -> bool:
    return (text[0].isalpha() or text[0] == "_") and all(c.isalnum() or c in "_$" for c in text)


def _catalog_part(raw: str) -> str:
    """A name as the catalog spells it (no quotes) in the analysis's spelling."""
    return raw if raw and raw == raw.lower() and _plain_identifier(raw) else f'"{raw}"'


@dataclass
class TableState:
    created_in_plan: bool
    # column -> type; None when the type is not known (CREATE TABLE AS, ...).
    columns: dict[str, exp.DataType | None] = field(default_factory=dict)
    # CHECK (column IS NOT NULL) constraints the plan added: name -> (column, validated).
    # A validated one lets SET NOT NULL skip its full scan (PostgreSQL 12+).
    not_null_checks: dict[str, tuple[str, bool]] = field(default_factory=dict)

    def copy(self, *, created_in_plan: bool | None = None) -> TableState:
        return TableState(
            self.created_in_plan if created_in_plan is None else created_in_plan,
            dict(self.columns),
            dict(self.not_null_checks),
        )


@dataclass
class SchemaState:
    # The catalog's tables by identity (never changed once made) and the plan's
    # changes over it (identity -> its state now; None: dropped or renamed away).
    base: Mapping[str, TableState] = field(default_factory=dict)
    overlay: dict[str, TableState | None] = field(default_factory=dict)
    # True when a database catalog seeded the state: an unknown table then
    # really is unknown rather than merely not described.
    seeded_from_catalog: bool = False
    # The search_path unqualified names resolve through (the analysis keeps it in
    # step with Context.search_path); () when it is not known.
    search_path: tuple[str, ...] = ("public",)
    # Set by the analysis while a CREATE TEMPORARY TABLE is applied.
    creating_temporary: bool = False

    @classmethod
    def from_catalog(cls, columns: Mapping[str, Mapping[str, str]]) -> SchemaState:
        base: dict[str, TableState] = {}
        # The catalog lists a visible table twice (``schema.table`` and ``table``):
        # the qualified spelling is its identity; a bare one alone means public.
        for table, cols in sorted(columns.items(), key=lambda item: "." not in item[0]):
            parts = table.split(".", 1) if "." in table else ["public", table]
            identity = f"{_catalog_part(parts[0])}.{_catalog_part(parts[1])}"
            if identity in base:
                continue
            base[identity] = TableState(
                created_in_plan=False,
                columns={name: parse_type(type_) for name, type_ in cols.items()},
            )
        return cls(base=base, seeded_from_catalog=bool(columns))

    def snapshot(self) -> SchemaState:
        """A copy that later changes to this state leave alone (and the reverse)."""
        return SchemaState(
            self.base, dict(self.overlay), self.seeded_from_catalog, self.search_path
        )

    def doubtful(self, before: SchemaState) -> SchemaState:
        """What is known when the changes made since ``before`` may or may not have
        taken effect (a transaction whose end the server did not report): a table
        they touched is no longer taken for one the session made."""
        merged = before.snapshot()
        for key in set(self.overlay) | set(before.overlay):
            was, now = before._get(key), self._get(key)
            if was is now:
                continue
            kept = now if now is not None else was
            merged.overlay[key] = None if kept is None else kept.copy(created_in_plan=False)
        merged.search_path = self.search_path
        return merged

    def _get(self, identity: str) -> TableState | None:
        overlay = self.overlay
        if identity in overlay:
            return overlay[identity]
        return self.base.get(identity)

    # -- names -----------------------------------------------------------------------

    def _search(self) -> tuple[str, ...]:
        path = self.search_path
        return path if TEMP_SCHEMA in path else (TEMP_SCHEMA, *path)

    def resolve(self, name: str) -> tuple[str, bool]:
        """(identity, certain) of the table ``name`` refers to now: a qualified name
        is itself; an unqualified one is the first table of that name along
        pg_temp and the search_path, or, when there is none, where CREATE TABLE would
        put it (the path's first schema). ``certain`` is False when a schema searched
        before the one found might hold a table of that name the analysis does not
        know (no catalog was read), or when the search_path is not known."""
        parts = [_part(p) for p in split_name(name)]
        if len(parts) > 1:
            return f"{parts[-2]}.{parts[-1]}", True
        table = parts[0]
        if not self.search_path:
            return f"{UNKNOWN_SCHEMA}.{table}", False
        searched = 0
        for schema in self._search():
            identity = f"{schema}.{table}"
            if self._get(identity) is not None:
                # pg_temp holds only what this session made: never unknown to it.
                earlier_known = self.seeded_from_catalog or searched == 0
                return identity, earlier_known
            if schema != TEMP_SCHEMA:
                searched += 1
        return self._create_identity(table), True

    def _create_identity(self, table: str) -> str:
        if self.creating_temporary:
            return f"{TEMP_SCHEMA}.{table}"
        path = [s for s in self.search_path if s != TEMP_SCHEMA]
        return f"{path[0]}.{table}" if path else f"{UNKNOWN_SCHEMA}.{table}"

    def identity(self, name: str) -> str:
        return self.resolve(name)[0]

    def table(self, name: str) -> TableState | None:
        return self._get(self.identity(name))

    def created_in_plan(self, name: str) -> bool:
        """Whether ``name`` is, for certain, a table this plan (session) made: the
        server reported it created and nothing replaced it since."""
        identity, certain = self.resolve(name)
        table = self._get(identity)
        return certain and table is not None and table.created_in_plan

    def column_type(self, table: str, column: str) -> exp.DataType | None:
        state = self.table(table)
        return None if state is None else state.columns.get(column)

    # -- changes, called by the analysis after each statement ---------------------
    # A table's state is replaced, never changed in place: a snapshot shares them.

    def _editable(self, table: str) -> tuple[str, TableState]:
        identity = self.identity(table)
        current = self._get(identity)
        state = current.copy() if current is not None else TableState(created_in_plan=False)
        self.overlay[identity] = state
        return identity, state

    def create_table(self, name: str, columns: Mapping[str, exp.DataType | None]) -> None:
        parts = split_name(name)
        identity = self.identity(name) if len(parts) > 1 else self._create_identity(_part(parts[0]))
        self.overlay[identity] = TableState(
            created_in_plan=True, columns={c: _detached(t) for c, t in columns.items()}
        )

    def drop_table(self, name: str) -> None:
        identity = self.identity(name)
        if self._get(identity) is not None:
            self.overlay[identity] = None

    def disown(self, name: str) -> None:
        """``name`` stays known but is no longer taken for a table this session made
        (CREATE ... IF NOT EXISTS: the server's answer is the same whether it made
        the table or found one there, rows and all)."""
        identity = self.identity(name)
        state = self._get(identity)
        if state is not None and state.created_in_plan:
            self.overlay[identity] = state.copy(created_in_plan=False)

    def move_table(self, name: str, schema: str) -> None:
        """ALTER TABLE ... SET SCHEMA: the same table under another identity."""
        identity = self.identity(name)
        state = self._get(identity)
        target = f"{_part(schema)}.{identity.rsplit('.', 1)[-1]}"
        if state is not None:
            self.overlay[identity] = None
            self.overlay[target] = state
        elif self._get(target) is not None:
            self.overlay[target] = None  # a table the analysis does not know is there now

    def forget_temporary(self) -> None:
        """DISCARD ALL / TEMP: the session's temporary tables are gone."""
        self.forget_schema(TEMP_SCHEMA)

    def forget_schema(self, schema: str) -> None:
        """DROP SCHEMA: what the plan made in it is gone with it."""
        prefix = _part(schema) + "."
        for identity in list(self.overlay):
            if identity.startswith(prefix):
                self.overlay[identity] = None

    def rename_table(self, old: str, new: str) -> None:
        identity = self.identity(old)
        state = self._get(identity)
        # RENAME TO names a table of the same schema.
        schema = identity.rsplit(".", 1)[0] if "." in identity else UNKNOWN_SCHEMA
        target = f"{schema}.{_part(split_name(new)[-1])}"
        if state is not None:
            self.overlay[identity] = None
            self.overlay[target] = state
        elif self._get(target) is not None:
            # A table the plan knows nothing about now holds the name.
            self.overlay[target] = None

    def set_column(self, table: str, column: str, type_: exp.DataType | None) -> None:
        _, state = self._editable(table)
        state.columns[column] = _detached(type_)

    def drop_column(self, table: str, column: str) -> None:
        state = self.table(table)
        if state is not None and column in state.columns:
            _, state = self._editable(table)
            state.columns.pop(column, None)

    def rename_column(self, table: str, old: str, new: str) -> None:
        state = self.table(table)
        if state is not None and old in state.columns:
            _, state = self._editable(table)
            state.columns[new] = state.columns.pop(old)

    def add_not_null_check(self, table: str, name: str, column: str, validated: bool) -> None:
        _, state = self._editable(table)
        state.not_null_checks[name] = (column, validated)

    def validate_check(self, table: str, name: str) -> None:
        state = self.table(table)
        if state is not None and name in state.not_null_checks:
            _, state = self._editable(table)
            state.not_null_checks[name] = (state.not_null_checks[name][0], True)

    def drop_check(self, table: str, name: str) -> None:
        state = self.table(table)
        if state is not None and name in state.not_null_checks:
            _, state = self._editable(table)
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
