"""The functions a statement may call, and which one a call reaches.

A statement that calls a function runs that function's body: a ``SELECT f()`` is
as destructive as the ``DROP TABLE`` inside ``f``. The analysis therefore keeps
the functions it knows (``Functions``, on the ``Context``): those the database's
catalog holds (read at the edge into ``FunctionFacts``) and those created earlier
in the plan or session, replaced by ``CREATE OR REPLACE``, forgotten by ``DROP``.
A call is resolved as PostgreSQL resolves it, along ``search_path`` (pg_catalog
first unless listed), by name and number of arguments; argument types are not
compared, so every overload that takes that many arguments is judged.

The calls of a statement are found in PostgreSQL's own parse tree (pglast), so a
call in a DEFAULT, a CHECK, a view, an index expression or a policy is found
like one in a SELECT list.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from pglast.parser import ParseError, parse_sql_json
from sqlglot.errors import TokenError
from sqlglot.tokenizer_core import TokenType

from runner.plan.grammar import parse_json
from runner.plan.statements import RawStatement, tokenize


@dataclass(frozen=True)
class CatalogFunction:
    """One user function or procedure as ``pg_proc`` describes it."""

    schema: str
    name: str
    kind: str  # pg_proc.prokind: f function, p procedure, a aggregate, w window
    language: str
    nargs: int  # input arguments
    nargdefaults: int = 0
    variadic: bool = False
    # pg_get_functiondef(): the CREATE statement, for sql and plpgsql bodies only.
    definition: str | None = None
    # Its input arguments' types by pg_type.typname (int4, text, _text...).
    arg_types: tuple[str, ...] | None = None


# (schema, name, input argument types by typname): one built-in overload.
Signature = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True)
class CatalogTrigger:
    """A trigger already in the database (``pg_trigger``, enabled, not internal): a
    write of ``events`` to the table runs its function's body."""

    table_schema: str
    table: str
    function_schema: str
    function: str
    events: frozenset[str]  # INSERT, UPDATE, DELETE, TRUNCATE


@dataclass(frozen=True)
class CatalogDefault:
    """A column DEFAULT (or generated column) already in the database that calls a
    function (``pg_attrdef``): an INSERT or UPDATE of the table may run it."""

    table_schema: str
    table: str
    expression: str  # pg_get_expr()


@dataclass(frozen=True)
class CatalogView:
    """A view already in the database (``pg_get_viewdef``): a statement that reads
    it runs the calls in its definition, and what the views it reads run."""

    schema: str
    name: str
    definition: str


@dataclass(frozen=True)
class FunctionFacts:
    """What the catalog says about functions: the built-in ones (pg_catalog,
    information_schema, and those an extension installed), by (schema, name),
    and every other function of a user schema."""

    builtins: frozenset[tuple[str, str]]
    functions: tuple[CatalogFunction, ...] = ()
    # The search_path a new session starts with (``SHOW search_path`` as the
    # catalog's reader, the same role and database; ALTER ROLE / DATABASE ... SET
    # change it), None when not read: ("public",) is assumed.
    search_path: tuple[str, ...] | None = None
    # Every built-in overload's argument types: a user function with the same name and
    # types later on the path than a built-in is never the one a call runs. None: not
    # read (every such user function may be).
    builtin_signatures: frozenset[Signature] | None = None
    # The triggers on the database's tables: a plain INSERT runs them too.
    triggers: tuple[CatalogTrigger, ...] = ()
    # The column defaults and generated columns that call functions.
    defaults: tuple[CatalogDefault, ...] = ()
    # The views and materialized views, by their definitions.
    views: tuple[CatalogView, ...] = ()


@dataclass
class Function:
    """A function the analysis can judge a call to."""

    schema: str
    name: str
    language: str
    min_args: int
    max_args: int | None  # None: variadic
    procedure: bool = False
    # The CREATE statement (the plan's, or the catalog's text): its body is read
    # from it when a call needs it.
    definition: RawStatement | None = None
    definition_text: str | None = None
    # Input argument types by typname (None: not known): decides whether a built-in
    # earlier on the path with the same types shadows it.
    arg_types: tuple[str, ...] | None = None
    # Where it came from, for messages: "" (this plan) or "catalog".
    source: str = ""
    # Set when the catalog's definition could not be had (an aggregate, C, ...).
    opaque_reason: str | None = None
    # Its own ``SET search_path`` (CREATE FUNCTION ... SET search_path = ...): the
    # path its body's calls resolve along; None: the caller's. Read with the body.
    search_path: tuple[str, ...] | None = None
    _body: Any = field(default=None, repr=False)  # bodies.Body, read once

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def accepts(self, nargs: int) -> bool:
        return self.min_args <= nargs and (self.max_args is None or nargs <= self.max_args)


class Resolved(Enum):
    BUILTIN = "builtin"
    UNKNOWN = "unknown"


@dataclass
class Functions:
    """The functions known at one point of a plan (one per ``Context``)."""

    # None: the catalog was not read (offline): only the plan's own functions are
    # judged, a call to anything else is assumed to be a built-in.
    builtins: frozenset[tuple[str, str]] | None = None
    known: dict[tuple[str, str], list[Function]] = field(default_factory=dict)
    # (schema, name) -> the argument types of its built-in overloads, when read. Read
    # only: a snapshot of the analysis (at every BEGIN in the gateway) shares it.
    builtin_types: Mapping[tuple[str, str], frozenset[tuple[str, ...]]] | None = None
    # (schema, table) -> the catalog's triggers on it; read only, shared likewise.
    triggers: Mapping[tuple[str, str], tuple[CatalogTrigger, ...]] = field(
        default_factory=lambda: _NO_TRIGGERS
    )
    # (schema, table) -> its defaults' expressions; read only, shared likewise.
    defaults: Mapping[tuple[str, str], tuple[str, ...]] = field(
        default_factory=lambda: _NO_DEFAULTS
    )
    # (schema, view) -> its definition; read only, shared likewise.
    views: Mapping[tuple[str, str], str] = field(default_factory=lambda: _NO_VIEWS)

    @classmethod
    def from_facts(cls, facts: FunctionFacts | None) -> Functions:
        functions = cls(builtins=None if facts is None else facts.builtins)
        if facts is not None and facts.builtin_signatures is not None:
            functions.builtin_types = _builtin_types(facts.builtin_signatures)
        if facts is not None and facts.triggers:
            functions.triggers = _by_table(facts.triggers)
        if facts is not None and facts.defaults:
            functions.defaults = _defaults_by_table(facts.defaults)
        if facts is not None and facts.views:
            functions.views = MappingProxyType(
                {(v.schema, v.name): v.definition for v in facts.views}
            )
        for entry in facts.functions if facts is not None else ():
            functions.known.setdefault((entry.schema, entry.name), []).append(_catalog(entry))
        return functions

    @property
    def catalog_read(self) -> bool:
        return self.builtins is not None

    def define(self, function: Function) -> None:
        """CREATE [OR REPLACE]: the newest definition with the same arguments wins."""
        same = self.known.setdefault((function.schema, function.name), [])
        same[:] = [
            f
            for f in same
            if (f.min_args, f.max_args, f.procedure)
            != (function.min_args, function.max_args, function.procedure)
        ]
        same.append(function)

    def replaces(self, function: Function) -> bool:
        """Whether defining ``function`` replaces one already callable (same schema,
        name and argument count): what calls that one runs the new body."""
        return any(
            (f.min_args, f.max_args, f.procedure)
            == (function.min_args, function.max_args, function.procedure)
            for f in self.known.get((function.schema, function.name), ())
        )

    def forget(self, parts: tuple[str, ...], path: tuple[str, ...]) -> None:
        """DROP / RENAME / SET SCHEMA of a function: no longer callable by that name.
        Every overload is forgotten (a later call to the name is then unknown, which
        fails closed when the catalog was read)."""
        name = parts[-1]
        for schema in parts[-2:-1] or path:
            if self.known.pop((schema, name), None) is not None:
                return

    def resolve(
        self, parts: tuple[str, ...], nargs: int, path: tuple[str, ...] | None
    ) -> list[Function] | Resolved:
        """The functions a call reaches (every overload taking ``nargs`` arguments, or
        every one of that name when none does), BUILTIN, or UNKNOWN; ``path`` None:
        search_path is not known."""
        name = parts[-1]
        if len(parts) > 1:
            schemas: tuple[str, ...] = parts[-2:-1]
        elif path is None:
            # search_path unknown (set to a computed value): any schema may come
            # first, so every function of that name is judged before a built-in.
            anywhere = [f for (_, n), fs in self.known.items() if n == name for f in fs]
            if anywhere:
                return [f for f in anywhere if f.accepts(nargs)] or anywhere
            schemas = ("pg_catalog",)
        else:
            return self._along(name, nargs, path)
        for schema in schemas:
            candidates = self.known.get((schema, name))
            if candidates:
                return [f for f in candidates if f.accepts(nargs)] or list(candidates)
            if self.builtins is not None and (schema, name) in self.builtins:
                return Resolved.BUILTIN
        if self.builtins is None:
            return Resolved.BUILTIN  # offline: anything the plan did not create
        return Resolved.UNKNOWN

    def _along(self, name: str, nargs: int, path: tuple[str, ...]) -> list[Function] | Resolved:
        """An unqualified call along a known path. PostgreSQL chooses among every
        function of that name on the path by argument types first and by path order
        only between equal signatures, so a user's public.lower(integer) is what
        lower(5) runs even behind pg_catalog.lower(text): every user function on the
        path that takes ``nargs`` arguments may be the one called, unless one with the
        same argument types (a built-in, or a user function) comes before it."""
        shadowing: set[tuple[str, ...]] = set()
        reachable: list[Function] = []
        named: list[Function] = []
        builtin = False
        for schema in path:
            here = self.known.get((schema, name), ())
            named.extend(here)
            for function in here:
                if (nargs < 0 or function.accepts(nargs)) and (
                    function.arg_types is None or function.arg_types not in shadowing
                ):
                    reachable.append(function)
            shadowing.update(f.arg_types for f in here if f.arg_types is not None)
            if self.builtins is not None and (schema, name) in self.builtins:
                builtin = True
                if self.builtin_types is not None:
                    shadowing.update(self.builtin_types.get((schema, name), ()))
        if reachable:
            return reachable
        if builtin:
            return Resolved.BUILTIN
        if named:
            return named  # none takes that many arguments: every one of the name
        if self.builtins is None:
            return Resolved.BUILTIN  # offline: anything the plan did not create
        return Resolved.UNKNOWN


_NO_TRIGGERS: Mapping[tuple[str, str], tuple[CatalogTrigger, ...]] = MappingProxyType({})
_NO_DEFAULTS: Mapping[tuple[str, str], tuple[str, ...]] = MappingProxyType({})
_NO_VIEWS: Mapping[tuple[str, str], str] = MappingProxyType({})


def _defaults_by_table(
    defaults: tuple[CatalogDefault, ...],
) -> Mapping[tuple[str, str], tuple[str, ...]]:
    by_table: dict[tuple[str, str], list[str]] = {}
    for default in defaults:
        by_table.setdefault((default.table_schema, default.table), []).append(default.expression)
    return MappingProxyType({key: tuple(value) for key, value in by_table.items()})


def _by_table(
    triggers: tuple[CatalogTrigger, ...],
) -> Mapping[tuple[str, str], tuple[CatalogTrigger, ...]]:
    by_table: dict[tuple[str, str], list[CatalogTrigger]] = {}
    for trigger in triggers:
        by_table.setdefault((trigger.table_schema, trigger.table), []).append(trigger)
    return MappingProxyType({key: tuple(value) for key, value in by_table.items()})


@functools.lru_cache(maxsize=8)
def _builtin_types(
    signatures: frozenset[Signature],
) -> Mapping[tuple[str, str], frozenset[tuple[str, ...]]]:
    """Built once per catalog read (every session of a database starts from it), and
    read-only (a MappingProxyType, not a dict: the snapshot copies dicts)."""
    by_name: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for schema, name, types in signatures:
        by_name.setdefault((schema, name), set()).add(types)
    return MappingProxyType({key: frozenset(value) for key, value in by_name.items()})


def _catalog(entry: CatalogFunction) -> Function:
    max_args = None if entry.variadic else entry.nargs
    function = Function(
        schema=entry.schema,
        name=entry.name,
        language=entry.language,
        min_args=entry.nargs - entry.nargdefaults,
        max_args=max_args,
        procedure=entry.kind == "p",
        arg_types=entry.arg_types,
        source="catalog",
    )
    if entry.kind == "a":
        function.opaque_reason = "an aggregate (its state functions are not read)"
    elif entry.definition is not None:
        function.definition_text = entry.definition
    elif entry.language in ("sql", "plpgsql"):
        function.opaque_reason = "its catalog definition could not be read"
    return function


# -- the calls in a statement ---------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A call: the function's name as written (qualified or not) and its argument count."""

    parts: tuple[str, ...]
    nargs: int  # -1: not stated (every overload of the name is judged)
    # How it runs when not called by name: "trigger" (CREATE TRIGGER ... EXECUTE
    # FUNCTION f()), "cast" (CREATE CAST ... WITH FUNCTION), "aggregate" (SFUNC and
    # the like), "operator" (CREATE OPERATOR ... FUNCTION); "" for a call.
    via: str = ""
    # Each argument's value when it is a literal (text, boolean, integer), else None.
    literals: tuple[str | bool | int | None, ...] = ()

    @property
    def trigger(self) -> bool:
        return self.via == "trigger"

    @property
    def written(self) -> str:
        return ".".join(self.parts)


def calls_in(text: str) -> list[Call] | str:
    """Every function call in one statement, in order (a function's own body and a DO
    block's are not looked into: they are read as bodies); an error message when
    PostgreSQL's parser cannot read the statement."""
    try:
        # (parsed once for this and the grammar cross-check, which reads it next)
        tree = json.loads(parse_json(text))
    except ParseError as error:
        return str(error).splitlines()[0] if str(error) else "syntax error"
    return list(_calls(tree))


# Statements whose parse tree holds a body of its own, read elsewhere.
_BODY_NODES = frozenset({"CreateFunctionStmt", "DoStmt"})


def _calls(tree: Any) -> Iterator[Call]:
    stack: list[Any] = [tree]
    pending: list[Call] = []
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key in _BODY_NODES:
                continue
            # A FuncCall node (CallStmt.funccall holds one without the node's name).
            if key in ("FuncCall", "funccall") and isinstance(value, Mapping):
                args = value.get("args") or ()
                literals = tuple(_literal(arg) for arg in args)
                pending.append(Call(_names(value.get("funcname")), len(args), literals=literals))
            elif key == "CreateTrigStmt" and isinstance(value, Mapping):
                pending.append(Call(_names(value.get("funcname")), 0, via="trigger"))
            elif key == "CreateCastStmt" and isinstance(value, Mapping):
                func = value.get("func")
                if isinstance(func, Mapping):
                    nargs = len(func.get("objargs") or ())
                    pending.append(Call(_names(func.get("objname")), nargs, via="cast"))
            elif key == "DefineStmt" and isinstance(value, Mapping):
                pending.extend(_support_functions(value))
            if isinstance(value, dict | list):
                stack.append(value)
    yield from pending


# The functions an aggregate or an operator runs (CREATE AGGREGATE / OPERATOR).
_SUPPORT_FUNCTIONS = frozenset(
    {
        "sfunc",
        "finalfunc",
        "combinefunc",
        "serialfunc",
        "deserialfunc",
        "msfunc",
        "minvfunc",
        "mfinalfunc",
        "function",
        "procedure",
        "restrict",
        "join",
    }
)
_DEFINE_KINDS = {"OBJECT_AGGREGATE": "aggregate", "OBJECT_OPERATOR": "operator"}


def _support_functions(define: Mapping[str, Any]) -> Iterator[Call]:
    via = _DEFINE_KINDS.get(str(define.get("kind")))
    if via is None:
        return
    for item in define.get("definition") or ():
        element = item.get("DefElem") if isinstance(item, Mapping) else None
        if not isinstance(element, Mapping) or element.get("defname") not in _SUPPORT_FUNCTIONS:
            continue
        arg = element.get("arg")
        named = arg.get("TypeName") if isinstance(arg, Mapping) else None
        if isinstance(named, Mapping):
            yield Call(_names(named.get("names")), -1, via=via)


def _sets_search_path(action: Any) -> bool:
    setting = (action.get("DefElem") or {}).get("arg") if isinstance(action, Mapping) else None
    variable = setting.get("VariableSetStmt") if isinstance(setting, Mapping) else None
    if not isinstance(variable, Mapping):
        return False
    return variable.get("name") == "search_path" or variable.get("kind") == "VAR_RESET_ALL"


def _literal(node: Any) -> str | bool | int | None:
    const = node.get("A_Const") if isinstance(node, Mapping) else None
    if not isinstance(const, Mapping):
        return None
    if "sval" in const:
        return str(const["sval"].get("sval", ""))
    if "boolval" in const:
        return bool(const["boolval"].get("boolval", False))
    if "ival" in const:
        return int(const["ival"].get("ival", 0))
    return None


def _names(items: Any) -> tuple[str, ...]:
    return tuple(
        str(item["String"]["sval"])
        for item in items or ()
        if isinstance(item, Mapping) and "String" in item
    )


def object_names(text: str) -> list[tuple[str, ...]]:
    """The functions a DROP / ALTER ... RENAME / ALTER ... SET SCHEMA of functions
    names (ALTER FUNCTION that changes only a property names none)."""
    try:
        tree = json.loads(parse_sql_json(text))
    except ParseError:
        return []
    names: list[tuple[str, ...]] = []
    for entry in tree.get("stmts") or ():
        stmt = entry.get("stmt") or {}
        if "DropStmt" in stmt:
            objects = stmt["DropStmt"].get("objects") or ()
        elif "AlterFunctionStmt" in stmt:
            # Only a change of its own search_path changes what its body calls.
            altered = stmt["AlterFunctionStmt"]
            if not any(_sets_search_path(a) for a in altered.get("actions") or ()):
                continue
            objects = [{"ObjectWithArgs": altered.get("func") or {}}]
        elif "RenameStmt" in stmt or "AlterObjectSchemaStmt" in stmt:
            inner = stmt.get("RenameStmt") or stmt.get("AlterObjectSchemaStmt") or {}
            objects = [inner.get("object")]
        else:
            continue
        for obj in objects:
            if isinstance(obj, Mapping) and "ObjectWithArgs" in obj:
                names.append(_names(obj["ObjectWithArgs"].get("objname")))
    return names


def parse_search_path(text: str) -> tuple[str, ...] | None:
    """``'"$user", public'`` (search_path as SHOW and set_config spell it) as the
    schemas it lists ("$user" left out: the reader has no schema of its own); None
    when it cannot be read."""
    try:
        tokens = tokenize(text)
    except TokenError:
        return None
    schemas: list[str] = []
    for token in tokens:
        if token.token_type is TokenType.COMMA:
            continue
        if token.token_type in (TokenType.IDENTIFIER, TokenType.STRING):
            name = token.text
        else:
            name = token.text.lower()
        if name and name != "$user":
            schemas.append(name)
    return tuple(schemas)
