"""The rule interface: what a rule is, what it sees, and the catalogue it joins.

A rule is a small function over one statement (``StatementView``) and what the
analysis knows at that point of the plan (``Context``), yielding one message per
problem. Its definition carries everything a reviewer reads in the PR (a stable
id, a rationale, a safer alternative) and its own examples: SQL that must
trigger it and SQL that must not. The test suite runs every rule's examples, so
a rule without both kinds of example does not pass.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from sqlglot import exp

from runner.plan.commands import CommandShape
from runner.plan.functions import Function, FunctionFacts, Functions
from runner.plan.model import Category, Decision, Severity
from runner.plan.schema import SchemaState
from runner.plan.statements import RawStatement

# Examples are judged on this server version unless they say otherwise: the
# version the labelled corpus assumes, and a current one.
EXAMPLE_SERVER_VERSION = 150000


@dataclass(frozen=True)
class Example:
    """SQL for a rule's tests, with the server facts it is judged against."""

    sql: str
    server_version: int | None = EXAMPLE_SERVER_VERSION
    # "table" -> column -> type, as the database's catalog would report it.
    columns: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    apply_lock_timeout: bool = True
    # The catalog's functions (None: no catalog read, as offline).
    functions: FunctionFacts | None = None

    @property
    def version_text(self) -> str:
        """``PostgreSQL 11.0``, or that the version is unknown (the rule assumes the worst)."""
        return version_text(self.server_version)


def version_text(version: int | None) -> str:
    """``server_version_num`` in words: 110000 -> ``PostgreSQL 11.0``, 90624 -> ``9.6.24``."""
    if version is None:
        return "server version unknown"
    major, minor = divmod(version, 10000)
    if major < 10:
        return f"PostgreSQL {major}.{minor // 100}.{minor % 100}"
    return f"PostgreSQL {major}.{minor}"


@dataclass
class StatementView:
    """One statement as the rules see it.

    ``node`` is sqlglot's AST (``None`` when sqlglot could not parse it);
    ``shape`` the token-level classification for statements sqlglot models only
    as ``exp.Command`` or cannot parse; ``kind`` a stable snake_case name for the
    statement (``None``: nothing recognised it, so it is unanalysable).
    ``origin`` says where a statement nested in another one came from
    (``"DO block"``, ``"EXECUTE string"``); rules treat it like any other.
    """

    raw: RawStatement
    node: exp.Expression | None
    shape: CommandShape | None
    kind: str | None
    parse_error: str | None = None
    origin: str | None = None
    # Set by the DO-block reader on the outer statement: inner problems it could
    # not read past (``EXECUTE`` of a computed string, another language...).
    unreadable_reasons: list[str] = field(default_factory=list)
    # Set by the reading of bodies (runner.plan.bodies) on the outer statement: what
    # it could not read in the functions the statement calls or defines, and calls
    # to functions nothing knows (while the catalog was read).
    function_problems: list[str] = field(default_factory=list)
    unknown_calls: list[str] = field(default_factory=list)
    # The function a CREATE FUNCTION|PROCEDURE defines, once read.
    defines: Function | None = None
    _alter_table: str | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        return self.raw.text

    def nodes(self, *types: type[exp.Expression]) -> Iterator[exp.Expression]:
        """Every node of the given types anywhere in the statement (CTEs included)."""
        if self.node is None:
            return iter(())
        return self.node.find_all(*types)

    def alter_actions(self) -> list[exp.Expression]:
        """The actions of an ``ALTER TABLE`` (empty for anything else)."""
        if (
            isinstance(self.node, exp.Alter)
            and (self.node.args.get("kind") or "").upper() == "TABLE"
        ):
            return list(self.node.args.get("actions") or [])
        return []

    def live_table_actions(self, context: Context) -> tuple[str, list[exp.Expression]] | None:
        """(table, actions) of an ALTER TABLE on a table the plan did not create.

        Changes to a table the plan itself created break no client and lock no
        one, so the rules about ALTER TABLE actions look only at these.
        """
        actions = self.alter_actions()
        if not actions:
            return None
        table = self.alter_table() or "?"
        if context.schema.created_in_plan(table):
            return None
        return table, actions

    def alter_table(self) -> str | None:
        if isinstance(self.node, exp.Alter):
            if self._alter_table is None:  # asked by many rules in turn
                self._alter_table = table_name(self.node.this)
            return self._alter_table
        if self.shape is not None and self.shape.kind.startswith("alter_table"):
            return self.shape.relation
        return None


@dataclass
class Context:
    """What the analysis knows just before a statement runs.

    ``server_version`` is ``server_version_num`` (150004 for 15.4) or ``None``
    when neither a database nor the configuration told it: rules then assume the
    worst (``version_below`` answers True).
    """

    server_version: int | None
    schema: SchemaState
    # Apply sets its own lock_timeout unless the configuration turns it off.
    apply_lock_timeout: bool = True
    transaction: int | None = None  # the explicit transaction we are in, if any
    # What the plan itself set: None nothing, True a non-zero lock_timeout, False one
    # switched off (0, DEFAULT, RESET: the server's default may be none). A session SET
    # overrides what apply (or the gateway's role) put in force; a SET LOCAL overrides
    # both until its transaction ends.
    session_lock_timeout: bool | None = None
    local_lock_timeout: bool | None = None
    # (table, constraint) added NOT VALID in the current transaction.
    not_valid_in_transaction: set[tuple[str, str]] = field(default_factory=set)
    # Enum labels added by ALTER TYPE ... ADD VALUE inside an explicit transaction,
    # (type, label) -> that transaction: PostgreSQL 12+ refuses to use them before it
    # commits. Enum types created inside one, type -> that transaction (labels added
    # to a type created in the same transaction are usable at once).
    enum_labels_added: dict[tuple[str, str], int] = field(default_factory=dict)
    enum_types_created: dict[str, int] = field(default_factory=dict)
    # The schemas an unqualified name is looked up in, as SET search_path left them
    # ("$user" dropped: the gateway's role has no schema of its own). pg_catalog is
    # searched first unless it is listed (then where it is listed).
    search_path: tuple[str, ...] = ("public",)
    # The session's search_path while a SET LOCAL one is in force (restored at the
    # transaction's end); None when no SET LOCAL search_path is in force.
    session_search_path: tuple[str, ...] | None = None
    # The functions a call may reach: the catalog's and those the plan defined.
    functions: Functions = field(default_factory=Functions)
    # A function was defined, replaced or dropped, or search_path changed: a
    # verdict cached on a statement's text (the gateway's) may no longer hold.
    definitions_changed: bool = False

    @property
    def cached_verdicts_hold(self) -> bool:
        """Whether a verdict cached on a statement's text still holds: not once an enum
        got a label (a read of it is judged again, every time), nor once a function was
        defined, replaced or dropped or search_path changed (a call may reach another
        body). Both only ever become true."""
        return not self.enum_labels_added and not self.definitions_changed

    @property
    def in_transaction(self) -> bool:
        return self.transaction is not None

    @property
    def has_lock_timeout(self) -> bool:
        if self.local_lock_timeout is not None:
            return self.local_lock_timeout
        if self.session_lock_timeout is not None:
            return self.session_lock_timeout
        return self.apply_lock_timeout

    @property
    def resolution_path(self) -> tuple[str, ...]:
        """The schemas an unqualified function or type name is resolved in, in order."""
        if "pg_catalog" in self.search_path:
            return self.search_path
        return ("pg_catalog", *self.search_path)

    def version_below(self, version_num: int) -> bool:
        return self.server_version is None or self.server_version < version_num

    def version_between(self, low: int, high: int) -> bool:
        """True when the server may be in [low, high] (unknown counts as may)."""
        return self.server_version is None or low <= self.server_version <= high


Check = Callable[[StatementView, Context], Iterable[str]]


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    category: Category
    severity: Severity
    summary: str
    rationale: str
    safer: str
    check: Check
    triggers: tuple[Example, ...]
    passes: tuple[Example, ...]
    # The rule's own decision when it is not the category's (a statement that
    # cannot succeed is denied, whatever the category would say).
    decision: Decision | None = None
    module: str = ""
    # The statement kinds (StatementView.kind; None for unrecognised) the check
    # can fire on. The engine skips the rule for any other kind; None: every kind.
    # An entry with a ``*`` is a pattern (``drop*``: every kind starting ``drop``).
    kinds: frozenset[str | None] | None = None

    def reads_kind(self, kind: str | None) -> bool:
        """Whether the engine runs the check on a statement of ``kind``."""
        if self.kinds is None or kind in self.kinds:
            return True
        return kind is not None and any(
            pattern is not None and "*" in pattern and fnmatch.fnmatchcase(kind, pattern)
            for pattern in self.kinds
        )

    @property
    def version_dependent(self) -> bool:
        """Whether the examples are judged on more than one server version: the same SQL
        may then be flagged on one and not on another, so every example says its version."""
        return len({e.server_version for e in (*self.triggers, *self.passes)}) > 1


CATALOGUE: dict[str, Rule] = {}


def rule(
    id: str,
    name: str,
    category: Category,
    severity: Severity,
    *,
    summary: str,
    rationale: str,
    safer: str,
    triggers: Iterable[str | Example],
    passes: Iterable[str | Example],
    decision: Decision | None = None,
    kinds: Iterable[str | None] | None = None,
) -> Callable[[Check], Check]:
    """Register a check function as a rule of the catalogue."""

    def register(check: Check) -> Check:
        if id in CATALOGUE:
            raise ValueError(f"duplicate rule id {id}")
        CATALOGUE[id] = Rule(
            id=id,
            name=name,
            category=category,
            severity=severity,
            summary=summary,
            rationale=" ".join(rationale.split()),
            safer=" ".join(safer.split()),
            check=check,
            triggers=tuple(_example(e) for e in triggers),
            passes=tuple(_example(e) for e in passes),
            decision=decision,
            module=check.__module__,
            kinds=None if kinds is None else frozenset(kinds),
        )
        return check

    return register


def _example(value: str | Example) -> Example:
    return value if isinstance(value, Example) else Example(value)


# -- small helpers shared by rules ------------------------------------------------


def table_name(node: exp.Expression | None) -> str:
    """``public."Users"`` -> ``public."Users"``; bare names lower-cased as PostgreSQL folds them."""
    if node is None:
        return ""
    if isinstance(node, exp.Schema):
        node = node.this
    if not isinstance(node, exp.Table):
        return node.sql(dialect="postgres")
    # Several rules ask for the same table of the same statement: worked out once
    # and kept on the (never modified) tree.
    meta = node.meta
    name = meta.get(_TABLE_NAME_KEY)
    if name is None:
        parts = [p for p in (node.args.get("catalog"), node.args.get("db"), node.this) if p]
        name = meta[_TABLE_NAME_KEY] = ".".join(_ident(p) for p in parts)
    return str(name)


_TABLE_NAME_KEY = "signoff.table_name"


def _ident(node: exp.Expression) -> str:
    if isinstance(node, exp.Identifier):
        return f'"{node.this}"' if node.quoted else node.this.lower()
    return node.sql(dialect="postgres").lower()


def ident(node: exp.Expression | None) -> str:
    return "" if node is None else _ident(node)


def drop_kind(view: StatementView) -> str | None:
    """``TABLE``, ``VIEW``, ``MATERIALIZED VIEW``... for a DROP, else None."""
    if not isinstance(view.node, exp.Drop):
        return None
    kind = (view.node.args.get("kind") or "").upper()
    if view.node.args.get("materialized"):
        return "MATERIALIZED " + kind
    return kind
