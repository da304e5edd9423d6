"""The statements a statement runs besides itself: DO blocks, and the bodies of the
functions, procedures and trigger functions it calls or defines.

``expand`` turns one statement into the list of statements the rules must also
judge for it (``Inner``), each with the text that says where it came from
(``DO block, line 3: ``, ``inside function public.f, line 12: ``). The analysis
runs the same rule catalogue over them and lifts their findings onto the
statement, so ``SELECT f()`` is flagged for the ``DROP TABLE`` inside ``f``:

* a DO block: its body's statements (PL/pgSQL, see ``plpgsql``);
* a call (in a SELECT, CALL, DEFAULT, CHECK, view, index expression, policy, a
  trigger's ``EXECUTE FUNCTION``): the body of each function it resolves to,
  recursively, bounded in depth and size;
* CREATE FUNCTION / PROCEDURE runs nothing and lifts nothing: the function is
  kept (``Context.functions``) and its body judged where it runs; but replacing a
  function already in place (the plan's or the catalog's) lifts what needs a
  reviewer in the new body, as triggers, views and DEFAULTs over it run it next.

What cannot be read (a body in another language, dynamic SQL, a call nested past
the bound, a call to a function nothing knows while the catalog was read) is
noted on the outer statement for the unanalysable rules to report.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import pglast
import sqlglot
from pglast import ast
from pglast.enums import FunctionParameterMode, VariableSetKind
from pglast.parser import ParseError
from pglast.stream import RawStream
from sqlglot import exp
from sqlglot.tokenizer_core import TokenType

from runner.plan import plpgsql
from runner.plan.functions import Call, Function, Resolved, calls_in
from runner.plan.plpgsql import Body, BodyStatement
from runner.plan.rules.base import Context, StatementView
from runner.plan.statements import RawStatement, split_statements

# A call chain deeper than this, or more body statements than this for one
# statement, is not followed: the statement is unanalysable past it.
MAX_DEPTH = 8
MAX_STATEMENTS = 2000

ViewOf = Callable[[RawStatement, str | None], StatementView]

_CREATE_ROUTINE = frozenset({"FUNCTION", "PROCEDURE"})
_INPUT_MODES = frozenset(
    {
        FunctionParameterMode.FUNC_PARAM_IN,
        FunctionParameterMode.FUNC_PARAM_INOUT,
        FunctionParameterMode.FUNC_PARAM_VARIADIC,
        FunctionParameterMode.FUNC_PARAM_DEFAULT,
    }
)
_STRINGS = frozenset({TokenType.STRING, TokenType.HEREDOC_STRING})


@dataclass(frozen=True)
class Inner:
    """A statement judged on behalf of another."""

    view: StatementView
    prefix: str  # put before each of its findings' messages
    runs_now: bool  # it runs with the statement (its effects are observed)
    review_only: bool  # only what needs a reviewer is lifted (a body defined, not run)


def expand(view: StatementView, context: Context, view_of: ViewOf) -> list[Inner]:
    """The statements ``view`` runs or defines besides itself (see the module doc)."""
    if not _may_expand(view, context) and not _fires_triggers(view, context):
        return []
    expander = _Expander(context, view_of, view)
    expander.statement(view, "", 0, (), runs_now=not _ddl(view), review_only=False, top=True)
    return expander.inner


def _may_expand(view: StatementView, context: Context) -> bool:
    if view.kind == "do" or _creates_routine(view):
        return True
    functions = context.functions
    if not functions.known and not functions.catalog_read:
        return False  # offline and nothing defined: every call is to a built-in
    return any(t.token_type is TokenType.L_PAREN for t in view.raw.tokens)


# What a write fires: the trigger events of each kind of write.
_WRITE_EVENTS: tuple[tuple[type[exp.Expression], frozenset[str]], ...] = (
    (exp.Insert, frozenset({"INSERT"})),
    (exp.Update, frozenset({"UPDATE"})),
    (exp.Delete, frozenset({"DELETE"})),
    (exp.Merge, frozenset({"INSERT", "UPDATE", "DELETE"})),
    (exp.TruncateTable, frozenset({"TRUNCATE"})),
)


def _fires_triggers(view: StatementView, context: Context) -> bool:
    functions = context.functions
    return bool(functions.triggers or functions.defaults or functions.views) and isinstance(
        view.node, exp.Expression
    )


def _writes(view: StatementView) -> list[tuple[tuple[str, ...], frozenset[str]]]:
    """(table name as written, in parts; the trigger events it fires) of every write in
    the statement, data-modifying CTEs included."""
    node = view.node
    if node is None:
        return []
    found: list[tuple[tuple[str, ...], frozenset[str]]] = []
    for write in node.find_all(*(kind for kind, _ in _WRITE_EVENTS)):
        events = next(e for kind, e in _WRITE_EVENTS if isinstance(write, kind))
        if isinstance(write, exp.Insert) and write.args.get("conflict") is not None:
            events = events | {"UPDATE"}  # ON CONFLICT DO UPDATE
        targets = write.expressions if isinstance(write, exp.TruncateTable) else [write.this]
        for target in targets:
            table = target if isinstance(target, exp.Table) else target.find(exp.Table)
            if table is not None and table.name:
                parts = [p for p in (table.args.get("db"), table.this) if p is not None]
                found.append((tuple(_name(p) for p in parts), events))
    return found


@functools.lru_cache(maxsize=1024)
def _default_calls(expression: str) -> tuple[Call, ...]:
    return _query_calls(f"SELECT {expression}")


@functools.lru_cache(maxsize=1024)
def _query_calls(query: str) -> tuple[Call, ...]:
    calls = calls_in(query)
    return () if isinstance(calls, str) else tuple(calls)


def _query_of(definition: str) -> str:
    """pg_get_viewdef()'s text (`` SELECT ...;``) as one statement."""
    return definition.strip().rstrip(";")


@functools.lru_cache(maxsize=1024)
def _tables_of(query: str) -> tuple[tuple[str, ...], ...]:
    """The tables and views a view's definition reads (to follow views over views)."""
    try:
        tree = sqlglot.parse_one(query, read="postgres")
    except sqlglot.errors.SqlglotError:
        return ()
    if tree is None:
        return ()
    return tuple(_parts(table) for table in tree.find_all(exp.Table) if table.name)


def _parts(table: exp.Table) -> tuple[str, ...]:
    return tuple(_name(p) for p in (table.args.get("db"), table.this) if p is not None)


def _name(part: exp.Expression) -> str:
    """As PostgreSQL's catalog spells it: a bare name folded to lower case."""
    if isinstance(part, exp.Identifier):
        return str(part.this) if part.quoted else str(part.this).lower()
    return part.sql(dialect="postgres").lower()


def _creates_routine(view: StatementView) -> bool:
    if view.kind in ("create_function", "create_procedure"):
        return True
    words = [t.text.upper() for t in view.raw.tokens[:4]]
    if words[:1] != ["CREATE"]:
        return False
    if words[1:3] == ["OR", "REPLACE"]:
        return len(words) > 3 and words[3] in _CREATE_ROUTINE
    return len(words) > 1 and words[1] in _CREATE_ROUTINE


def _ddl(view: StatementView) -> bool:
    kind = view.kind or ""
    return kind.startswith(("create", "alter_", "drop_", "comment"))


@dataclass
class _Expander:
    context: Context
    view_of: ViewOf
    outer: StatementView
    inner: list[Inner] = field(default_factory=list)
    count: int = 0
    stopped: bool = False

    # The search_path of the function bodies being read (their own SET search_path).
    paths: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def _path(self) -> tuple[str, ...] | None:
        # An empty search_path is one the analysis lost track of (a computed
        # set_config, a rollback it could not follow): resolved as unknown.
        path = self.paths[-1] if self.paths else self.context.search_path
        if not path:
            return None
        return path if "pg_catalog" in path else ("pg_catalog", *path)

    def problem(self, message: str) -> None:
        if message not in self.outer.function_problems:
            self.outer.function_problems.append(message)

    def statement(
        self,
        view: StatementView,
        prefix: str,
        depth: int,
        stack: tuple[int, ...],
        *,
        runs_now: bool,
        review_only: bool,
        top: bool = False,
    ) -> None:
        """What ``view`` (itself judged elsewhere) leads to."""
        if view.kind == "do":
            body = plpgsql.read_do(view.raw)
            if top:
                view.unreadable_reasons.extend(body.problems)
            else:
                for message in body.problems:
                    self.problem(f"{prefix}DO block: {message}")
            self.body(body.statements, prefix, "", depth, stack, runs_now, review_only)
            return
        if _creates_routine(view):
            function = define(view.raw, self.context)
            if function is None:
                return
            # Defining runs nothing (the labelled corpus calls a definition safe):
            # the body is judged where it runs, at each call and trigger. Replacing a
            # function already in place is another matter: the triggers, views,
            # DEFAULTs and functions that call it run the new body from now on, and
            # none of them is judged again, so what needs a reviewer in it is lifted.
            view.defines = function
            if view.kind is None:
                # sqlglot cannot read some definitions (RETURNS trigger, RETURNS
                # SETOF); PostgreSQL's parser did, and a definition runs nothing:
                # it is a CREATE FUNCTION, not an unrecognised statement.
                view.kind = "create_procedure" if function.procedure else "create_function"
            if self.context.functions.replaces(function):
                label = f"in the new body of {_noun(function)} {function.qualified}"
                self.function(function, prefix, label, depth, stack, False, True)
            return
        self.triggers(view, prefix, depth, stack, runs_now, review_only)
        if not _may_expand(view, self.context):
            return
        calls = calls_in(view.raw.text)
        if isinstance(calls, str):
            if self.context.functions.catalog_read:
                self.problem(f"{prefix}cannot find the functions it calls: {calls}")
            return
        self.calls(calls, prefix, depth, stack, runs_now, review_only)

    def calls(
        self,
        calls: list[Call],
        prefix: str,
        depth: int,
        stack: tuple[int, ...],
        runs_now: bool,
        review_only: bool,
        via: str = "",
    ) -> None:
        """Each call judged by the bodies it reaches (``via``: how it runs unnamed)."""
        for call in calls:
            resolved = self.context.functions.resolve(call.parts, call.nargs, self._path)
            if resolved is Resolved.BUILTIN:
                continue
            if resolved is Resolved.UNKNOWN:
                message = (
                    f"{prefix}calls {call.written}(), which is neither built in nor "
                    "defined in the catalog or earlier in the plan"
                )
                if message not in self.outer.unknown_calls:
                    self.outer.unknown_calls.append(message)
                continue
            assert isinstance(resolved, list)
            for function in resolved:
                if id(function) in stack:
                    continue  # recursion: its body is being judged already
                noun = "trigger function" if call.trigger else _noun(function)
                label = f"inside {noun} {function.qualified}"
                if call.via and not call.trigger:
                    label += f" (the {call.via}'s)"
                self.function(function, prefix, via + label, depth, stack, runs_now, review_only)

    def triggers(
        self,
        view: StatementView,
        prefix: str,
        depth: int,
        stack: tuple[int, ...],
        runs_now: bool,
        review_only: bool,
    ) -> None:
        """A write to a table with triggers in the catalog runs their functions: each
        one whose events the write fires is judged as a call; an INSERT or UPDATE may
        evaluate the table's column defaults and generated columns, whose calls are
        judged too. An unqualified table is
        taken to be every table of that name on the path that has triggers (which one
        it is depends on tables the analysis may not know; fail closed)."""
        by_table = self.context.functions.triggers
        defaults = self.context.functions.defaults
        self.views(view, prefix, depth, stack, runs_now, review_only)
        if not by_table and not defaults:
            return
        path = self._path or ()
        for parts, events in _writes(view):
            schemas = parts[:-1] or tuple(s for s in path if s != "pg_catalog")
            for schema in schemas:
                if events & {"INSERT", "UPDATE"}:
                    # An INSERT (or an UPDATE ... SET c = DEFAULT, a generated column)
                    # may evaluate the table's defaults: the calls in them run.
                    for expression in defaults.get((schema, parts[-1]), ()):
                        found = _default_calls(expression)
                        if found:
                            via = f"in a DEFAULT of {schema}.{parts[-1]}, "
                            self.calls(
                                list(found), prefix, depth, stack, runs_now, review_only, via
                            )
                for trigger in by_table.get((schema, parts[-1]), ()):
                    if not trigger.events & events:
                        continue
                    name = (trigger.function_schema, trigger.function)
                    resolved = self.context.functions.resolve(name, 0, self._path)
                    if not isinstance(resolved, list):
                        continue  # a built-in (an extension's), or known to no one
                    for function in resolved:
                        if id(function) in stack:
                            continue
                        label = (
                            f"inside trigger function {function.qualified} "
                            f"(a trigger on {schema}.{parts[-1]})"
                        )
                        self.function(function, prefix, label, depth, stack, runs_now, review_only)

    def views(
        self,
        view: StatementView,
        prefix: str,
        depth: int,
        stack: tuple[int, ...],
        runs_now: bool,
        review_only: bool,
    ) -> None:
        """A statement that reads a view of the catalog runs the calls in its
        definition, and in the definitions of the views it reads in turn (each once).
        An unqualified name is taken to be every view of that name on the path."""
        definitions = self.context.functions.views
        kind = view.kind or ""
        if not definitions or view.node is None or kind.startswith(("drop", "alter", "comment")):
            return  # naming a view to drop, alter or comment on it does not read it
        path = tuple(s for s in (self._path or ()) if s != "pg_catalog")
        pending = [_parts(table) for table in view.node.find_all(exp.Table) if table.name]
        seen: set[tuple[str, str]] = set()
        while pending:
            parts = pending.pop()
            for schema in parts[:-1] or path:
                key = (schema, parts[-1])
                definition = definitions.get(key)
                if definition is None or key in seen:
                    continue
                seen.add(key)
                query = _query_of(definition)
                found = _query_calls(query)
                if found:
                    via = f"in view {schema}.{parts[-1]}, "
                    self.calls(list(found), prefix, depth, stack, runs_now, review_only, via)
                pending.extend(_tables_of(query))

    def function(
        self,
        function: Function,
        prefix: str,
        label: str,
        depth: int,
        stack: tuple[int, ...],
        runs_now: bool,
        review_only: bool,
    ) -> None:
        if depth >= MAX_DEPTH:
            self.problem(
                f"{prefix}{label}: calls nested more than {MAX_DEPTH} deep are not followed"
            )
            return
        body = body_of(function)
        for message in body.problems:
            self.problem(f"{prefix}{label}: {message}")
        where = " of its body" if function.source == "catalog" else ""
        own_path = function.search_path
        if own_path is not None:
            self.paths.append(own_path)
        try:
            self.body(
                body.statements,
                prefix,
                label,
                depth + 1,
                (*stack, id(function)),
                runs_now,
                review_only,
                where,
            )
        finally:
            if own_path is not None:
                self.paths.pop()

    def body(
        self,
        statements: list[BodyStatement],
        prefix: str,
        label: str,
        depth: int,
        stack: tuple[int, ...],
        runs_now: bool,
        review_only: bool,
        where: str = "",
    ) -> None:
        for statement in statements:
            if self.stopped:
                return
            self.count += 1
            if self.count > MAX_STATEMENTS:
                self.stopped = True
                self.problem(
                    f"{prefix}{label or 'the block'}: more than {MAX_STATEMENTS} statements "
                    "in the bodies it runs; not read past them"
                )
                return
            origin = ", ".join(p for p in (label, statement.origin) if p)
            own = f"{prefix}{origin}, line {statement.raw.line}{where}: "
            view = self.view_of(statement.raw, statement.origin or label or None)
            if not statement.calls_only:
                self.inner.append(Inner(view, own, runs_now, review_only))
            self.statement(view, own, depth, stack, runs_now=runs_now, review_only=review_only)


def _noun(function: Function) -> str:
    return "procedure" if function.procedure else "function"


# -- definitions -----------------------------------------------------------------------


def define(raw: RawStatement, context: Context) -> Function | None:
    """The function a CREATE [OR REPLACE] FUNCTION|PROCEDURE defines (None: unreadable,
    which the statement's own analysis reports)."""
    stmt = _create_statement(raw.text)
    if stmt is None:
        return None
    parts = tuple(str(n.sval) for n in stmt.funcname or ())
    if not parts:
        return None
    schema = parts[-2] if len(parts) > 1 else _creation_schema(context.search_path)
    inputs = [p for p in stmt.parameters or () if p.mode in _INPUT_MODES]
    required = sum(1 for p in inputs if p.defexpr is None)
    variadic = any(p.mode is FunctionParameterMode.FUNC_PARAM_VARIADIC for p in inputs)
    return Function(
        schema=schema,
        name=parts[-1],
        language=_language(stmt),
        min_args=required,
        max_args=None if variadic else len(inputs),
        procedure=bool(stmt.is_procedure),
        definition=raw,
        arg_types=tuple(_type_name(p.argType) for p in inputs),
    )


def _type_name(type_name: ast.TypeName) -> str:
    """A parameter's type as pg_type.typname calls it: PostgreSQL's parser already
    spells the SQL-standard names as theirs (int -> int4, varchar(3) -> varchar);
    an array is its element's name after an underscore."""
    name = str(type_name.names[-1].sval) if type_name.names else ""
    return "_" + name if type_name.arrayBounds else name


def _create_statement(text: str) -> ast.CreateFunctionStmt | None:
    try:
        parsed = pglast.parse_sql(text)
    except ParseError:
        return None
    if len(parsed) != 1 or not isinstance(parsed[0].stmt, ast.CreateFunctionStmt):
        return None
    return parsed[0].stmt


def _creation_schema(path: tuple[str, ...]) -> str:
    for schema in path:
        if schema not in ("pg_catalog", "pg_temp"):
            return schema
    return "public"


def _language(stmt: ast.CreateFunctionStmt) -> str:
    for option in stmt.options or ():
        if option.defname == "language" and isinstance(option.arg, ast.String):
            return str(option.arg.sval).lower()
    return "sql"


def _own_search_path(stmt: ast.CreateFunctionStmt) -> tuple[str, ...] | None:
    """``SET search_path = a, b`` of the definition (empty: one it cannot read)."""
    for option in stmt.options or ():
        setting = option.arg
        if option.defname != "set" or not isinstance(setting, ast.VariableSetStmt):
            continue
        if setting.name != "search_path":
            continue
        if setting.kind is not VariableSetKind.VAR_SET_VALUE:
            return ()
        schemas = []
        for arg in setting.args or ():
            value = arg.val if isinstance(arg, ast.A_Const) else None
            if not isinstance(value, ast.String):
                return ()
            if value.sval and value.sval != "$user":
                schemas.append(str(value.sval))
        return tuple(schemas)
    return None


def _as_strings(stmt: ast.CreateFunctionStmt) -> list[str]:
    for option in stmt.options or ():
        if option.defname == "as":
            arg = option.arg
            items = arg if isinstance(arg, tuple | list) else (arg,)
            return [str(i.sval) for i in items if isinstance(i, ast.String)]
    return []


def body_of(function: Function) -> Body:
    """The statements of a function's body, read once."""
    if function._body is None:
        function._body = _read_body(function)
    body = function._body
    assert isinstance(body, Body)
    return body


def _read_body(function: Function) -> Body:
    language = function.language
    body = Body(language=language)
    if function.opaque_reason is not None:
        body.problems.append(f"cannot be read: {function.opaque_reason}")
        return body
    raw = function.definition
    text = raw.text if raw is not None else function.definition_text
    stmt = _create_statement(text) if text is not None else None
    if text is None or stmt is None:
        body.problems.append("its definition cannot be read")
        return body
    if language not in ("sql", "plpgsql"):
        body.problems.append(
            f"its body is in language {language}, which Signoff cannot read: "
            "what it runs is known only when it runs"
        )
        return body
    function.search_path = _own_search_path(stmt)
    strings = _as_strings(stmt)
    # Lines: of the plan for the plan's own functions; of the body (as PostgreSQL's
    # error context and psql's \sf+ count them) for the catalog's.
    first_line = raw.line if raw is not None else 1
    body_line = _string_line(raw, strings[0]) if raw is not None and strings else first_line
    if language == "plpgsql":
        return plpgsql.read_function(text, body_line)
    if stmt.sql_body is not None:
        for atomic in _atomic_statements(stmt.sql_body):
            for inner in split_statements(atomic, first_line=first_line):
                body.statements.append(BodyStatement(inner, ""))
        return body
    if not strings:
        body.problems.append("it has no body")
        return body
    for inner in split_statements(strings[0], first_line=body_line):
        body.statements.append(BodyStatement(inner, ""))
    return body


def _atomic_statements(sql_body: object) -> list[str]:
    """``BEGIN ATOMIC ...; END`` and ``RETURN expr`` bodies, as SQL text."""
    if isinstance(sql_body, ast.ReturnStmt):
        value = sql_body.returnval
        return [f"SELECT {RawStream()(value)}"] if value is not None else []
    texts: list[str] = []
    stack = [sql_body]
    while stack:
        node = stack.pop(0)
        if isinstance(node, tuple | list):
            stack[:0] = list(node)
        elif isinstance(node, ast.Node):
            texts.append(RawStream()(node))
    return texts


def _string_line(raw: RawStatement, body: str) -> int:
    """The line the body string starts on (the statement's first line if not found)."""
    for token in raw.tokens:
        if token.token_type in _STRINGS and token.text == body:
            return plpgsql.line_of(raw, token)
    return raw.line
