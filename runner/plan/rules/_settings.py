"""The run-time settings a statement changes, however it is spelt; no rule of its own.

A setting changes through ``SET [SESSION|LOCAL] name {=|TO} value``, ``RESET``,
``set_config('name', 'value', is_local)``, ``ALTER SYSTEM SET``, and the defaults
``ALTER ROLE|USER ... SET`` / ``ALTER DATABASE ... SET`` / ``ALTER FUNCTION ... SET``
put in force for later sessions or calls. The rules about settings that switch a
control off (session_replication_role, audit logging) read them all from here, so
that the spelling never decides the verdict. Read from tokens (sqlglot models most
of these as opaque commands) and, for ``set_config``, from the tree.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.tokenizer_core import TokenType

from runner.plan.commands import Word, words
from runner.plan.rules._calls import calls, unicode_unescaped
from runner.plan.rules.base import StatementView

# The first two words of the other statements that can change a setting.
_SETTING_STARTS = frozenset(
    {
        ("ALTER", "SYSTEM"),
        ("ALTER", "ROLE"),
        ("ALTER", "USER"),
        ("ALTER", "DATABASE"),
        ("ALTER", "FUNCTION"),
        ("ALTER", "PROCEDURE"),
        ("ALTER", "ROUTINE"),
        ("CREATE", "OR"),
        ("CREATE", "FUNCTION"),
        ("CREATE", "PROCEDURE"),
    }
)
# ALTER <what> ... SET name = value: the forms that set a default for later.
_ALTER_DEFAULTS = frozenset({"ROLE", "USER", "DATABASE", "FUNCTION", "PROCEDURE", "ROUTINE"})


@dataclass(frozen=True)
class SettingChange:
    """One setting a statement changes.

    ``name`` lower-cased (``pgaudit.log``; ``None``: computed, not known);
    ``value`` as written, lower-cased, list items joined by ``,`` (``None``: not a
    literal, or the setting goes back to its default, see ``default``); ``how`` the
    form, for messages (``SET``, ``SET LOCAL``, ``set_config()``, ``ALTER SYSTEM``...).
    """

    name: str | None
    value: str | None
    how: str
    default: bool = False


def setting_changes(view: StatementView) -> list[SettingChange]:
    tokens = view.raw.tokens
    if not tokens:
        return []
    # Asked of every statement by several rules: words only for the statements
    # whose first word can change a setting.
    first = tokens[0].text.upper()
    second = tokens[1].text.upper() if len(tokens) > 1 else ""
    may_set = first in ("SET", "RESET") or (first, second) in _SETTING_STARTS
    changes = _from_words(words(tokens)) if may_set else []
    # (a necessary condition on the text first: most statements call no set_config)
    if "set_config" in view.raw.text.lower() and any(c.name == "set_config" for c in calls(view)):
        changes.extend(_set_config(view))
    return changes


def _from_words(ws: list[Word]) -> list[SettingChange]:
    first = ws[0].text
    if first in ("SET", "RESET"):
        i = 1
        how = first
        if first == "SET" and len(ws) > 1 and ws[1].text in ("LOCAL", "SESSION"):
            how = "SET LOCAL" if ws[1].text == "LOCAL" else "SET"
            i = 2
        return _assignment(ws, i, how, reset=first == "RESET")
    if first == "CREATE" and len(ws) > 3:
        # CREATE [OR REPLACE] FUNCTION / PROCEDURE ... SET name = value: in force
        # while the routine runs.
        what = ws[3].text if ws[1].text == "OR" else ws[1].text
        return _routine_setting(ws, what) if what in ("FUNCTION", "PROCEDURE") else []
    if first != "ALTER" or len(ws) < 3:
        return []
    what = ws[1].text
    if what == "SYSTEM":
        if ws[2].text in ("SET", "RESET"):
            return _assignment(ws, 3, "ALTER SYSTEM", reset=ws[2].text == "RESET")
        return []
    if what not in _ALTER_DEFAULTS:
        return []
    return _routine_setting(ws, what)


def _routine_setting(ws: list[Word], what: str) -> list[SettingChange]:
    """The first ``SET name = value`` / ``RESET name`` outside parentheses."""
    depth = 0
    for i, word in enumerate(ws[2:], start=2):
        kind = word.token.token_type
        depth += kind is TokenType.L_PAREN
        depth -= kind is TokenType.R_PAREN
        if depth == 0 and word.text in ("SET", "RESET") and i + 1 < len(ws):
            if word.text == "SET" and ws[i + 1].text in ("SCHEMA", "TABLESPACE"):
                continue  # ALTER FUNCTION f() SET SCHEMA s: not a setting
            verb = "CREATE" if ws[0].text == "CREATE" else "ALTER"
            found = _assignment(ws, i + 1, f"{verb} {what}", reset=word.text == "RESET")
            if found:
                return found
    return []


def _assignment(ws: list[Word], i: int, how: str, *, reset: bool) -> list[SettingChange]:
    """``name {=|TO} value[, value...]`` (or, after RESET, ``name``) from ``ws[i]`` on."""
    name_parts: list[str] = []
    if (
        i + 2 < len(ws)
        and ws[i].text == "U"
        and ws[i + 1].token.token_type is TokenType.AMP
        and ws[i + 2].token.token_type is TokenType.IDENTIFIER
    ):
        # SET U&"..." = ...: the name its escapes spell.
        escape = "\\"
        after = i + 3
        if after + 1 < len(ws) and ws[after].text == "UESCAPE":
            escape = ws[after + 1].token.text[:1] or escape
            after += 2
        name_parts.append(unicode_unescaped(ws[i + 2].token.text, escape).lower())
        i = after
    escaped = bool(name_parts)
    while not escaped and i < len(ws) and ws[i].is_name and ws[i].text not in ("TO",):
        name_parts.append(ws[i].token.text.lower())
        i += 1
        if i < len(ws) and ws[i].token.token_type is TokenType.DOT:
            i += 1
            continue
        break
    if not name_parts:
        return []
    name = ".".join(name_parts)
    if reset:
        return [SettingChange(name, None, how.replace("SET", "RESET", 1), default=True)]
    if i >= len(ws) or not (ws[i].token.token_type is TokenType.EQ or ws[i].text == "TO"):
        return []
    values = ws[i + 1 :]
    if not values:
        return []
    if len(values) == 1 and values[0].text == "DEFAULT":
        return [SettingChange(name, None, how, default=True)]
    items = [
        v.token.text.lower()
        for v in values
        if v.token.token_type not in (TokenType.COMMA, TokenType.SEMICOLON)
    ]
    literal = all(
        v.token.token_type not in (TokenType.PARAMETER, TokenType.PLACEHOLDER) for v in values
    )
    return [SettingChange(name, ",".join(items) if literal else None, how)]


def _literal(node: exp.Expression | None) -> str | None:
    while isinstance(node, exp.Paren | exp.Cast):
        node = node.this
    if isinstance(node, exp.Literal):
        return str(node.this).lower()
    return None


def _set_config(view: StatementView) -> list[SettingChange]:
    """``set_config(name, value, is_local)`` calls; a name that is not a literal is
    read from ``WHERE name = '...'`` of pg_dump's ``... FROM pg_settings`` form, else
    it is unknown (``None``)."""
    changes = []
    node = view.node
    parsed = node is not None and not isinstance(node, exp.Command)
    found = list(node.find_all(exp.Anonymous)) if parsed and node is not None else []
    for call in found:
        if str(call.name).lower() != "set_config":
            continue
        args = list(call.expressions)
        name = _literal(args[0]) if args else None
        if name is None and args and isinstance(args[0], exp.Column):
            name = _pg_settings_row(call)
        value = _literal(args[1]) if len(args) > 1 else None
        changes.append(SettingChange(name, value, "set_config()"))
    if node is None or isinstance(node, exp.Command):
        # Unparsed: the call's name is not read; assume any setting.
        changes.extend(
            SettingChange(None, None, "set_config()") for c in calls(view) if c.name == "set_config"
        )
    return changes


def _pg_settings_row(call: exp.Anonymous) -> str | None:
    select = call.find_ancestor(exp.Select)
    if select is None:
        return None
    source = select.args.get("from_")
    table = source.this if isinstance(source, exp.From) else None
    where = select.args.get("where")
    if not (isinstance(table, exp.Table) and table.name.lower() == "pg_settings"):
        return None
    condition = where.this if isinstance(where, exp.Where) else None
    if (
        isinstance(condition, exp.EQ)
        and isinstance(condition.this, exp.Column)
        and condition.this.name.lower() == "name"
    ):
        return _literal(condition.expression)
    return None
