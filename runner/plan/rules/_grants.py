"""What a ``GRANT`` (or ``ALTER DEFAULT PRIVILEGES ... GRANT``) gives, to whom; no rule of its own.

Read from tokens: sqlglot parses ``GRANT SELECT ON t TO r`` but not ``ON ALL TABLES
IN SCHEMA``, role membership or default privileges, and one reader for every form
keeps the rules consistent.

    GRANT privileges ON [kind] objects TO grantees [WITH GRANT OPTION] [GRANTED BY r]
    GRANT roles TO grantees [WITH ADMIN OPTION | WITH ADMIN TRUE ...] [GRANTED BY r]
    ALTER DEFAULT PRIVILEGES [FOR ROLE r] [IN SCHEMA s] GRANT ... ON TABLES TO ...
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot.tokenizer_core import TokenType

from runner.plan.commands import Word, normalise_name, words
from runner.plan.rules._calls import unicode_folded
from runner.plan.rules.base import StatementView

# Object kinds after ON, longest first (the default, with no kind word, is TABLE).
_KINDS: tuple[tuple[str, ...], ...] = (
    ("ALL", "TABLES", "IN", "SCHEMA"),
    ("ALL", "SEQUENCES", "IN", "SCHEMA"),
    ("ALL", "FUNCTIONS", "IN", "SCHEMA"),
    ("ALL", "PROCEDURES", "IN", "SCHEMA"),
    ("ALL", "ROUTINES", "IN", "SCHEMA"),
    ("FOREIGN", "DATA", "WRAPPER"),
    ("FOREIGN", "SERVER"),
    ("LARGE", "OBJECT"),
    ("TABLE",),
    ("SEQUENCE",),
    ("DATABASE",),
    ("DOMAIN",),
    ("FUNCTION",),
    ("PROCEDURE",),
    ("ROUTINE",),
    ("LANGUAGE",),
    ("PARAMETER",),
    ("SCHEMA",),
    ("TABLESPACE",),
    ("TYPE",),
    # ALTER DEFAULT PRIVILEGES
    ("TABLES",),
    ("SEQUENCES",),
    ("FUNCTIONS",),
    ("ROUTINES",),
    ("TYPES",),
    ("SCHEMAS",),
)
PUBLIC = "public"


@dataclass(frozen=True)
class GrantSpec:
    """One grant. ``privileges`` upper-cased (``SELECT``, ``ALL``, ``CREATE``...) or, for
    role membership (``kind`` None), the roles granted as folded; ``grantees`` as
    folded, ``public`` for PUBLIC; ``grant_option``: WITH GRANT / ADMIN OPTION."""

    privileges: tuple[str, ...]
    kind: str | None
    objects: tuple[str, ...]
    grantees: tuple[str, ...]
    grant_option: bool
    default_privileges: bool = False

    @property
    def to_public(self) -> bool:
        # PostgreSQL reads a quoted "public" as PUBLIC too.
        return PUBLIC in self.grantees or '"public"' in self.grantees

    @property
    def shown_objects(self) -> str:
        kind = (self.kind or "").lower()
        return f"{kind} {', '.join(self.objects)}".strip()


def read_grant(view: StatementView) -> GrantSpec | None:
    ws = words(unicode_folded(view.raw.tokens))
    default = False
    if [w.text for w in ws[:3]] == ["ALTER", "DEFAULT", "PRIVILEGES"]:
        start = next((i for i, w in enumerate(ws) if w.text == "GRANT"), None)
        if start is None:
            return None  # ... REVOKE: takes away, not reported here
        ws = ws[start:]
        default = True
    if not ws or ws[0].text != "GRANT":
        return None
    on = _top_level(ws, "ON")
    to = _top_level(ws, "TO")
    if to is None:
        return None
    tail = ws[to + 1 :]
    grantees, option = _grantees(tail)
    if on is None or on > to:
        roles = tuple(_names(ws[1:to]))
        return GrantSpec(roles, None, (), grantees, option, default)
    privileges = tuple(
        w.text for w in _depth_zero(ws[1:on]) if w.token.token_type is not TokenType.COMMA
    )
    kind, objects_start = _kind(ws, on + 1)
    objects = tuple(_names(ws[objects_start:to]))
    return GrantSpec(privileges, kind, objects, grantees, option, default)


def _top_level(ws: list[Word], text: str) -> int | None:
    depth = 0
    for i, word in enumerate(ws):
        kind = word.token.token_type
        depth += kind is TokenType.L_PAREN
        depth -= kind is TokenType.R_PAREN
        if depth == 0 and word.text == text and not word.is_string:
            return i
    return None


def _depth_zero(ws: list[Word]) -> list[Word]:
    out, depth = [], 0
    for word in ws:
        kind = word.token.token_type
        if kind is TokenType.L_PAREN:
            depth += 1
        elif kind is TokenType.R_PAREN:
            depth -= 1
        elif depth == 0:
            out.append(word)
    return out


def _kind(ws: list[Word], i: int) -> tuple[str, int]:
    texts = [w.text for w in ws[i : i + 4]]
    for kind in _KINDS:
        if texts[: len(kind)] == list(kind):
            return " ".join(kind), i + len(kind)
    return "TABLE", i


def _names(ws: list[Word]) -> list[str]:
    """Comma-separated (possibly qualified) names, argument lists skipped."""
    names: list[str] = []
    parts: list[Word] = []
    for word in _depth_zero(ws):
        kind = word.token.token_type
        if kind is TokenType.COMMA:
            if parts:
                names.append(normalise_name(parts))
            parts = []
        elif kind is not TokenType.DOT and word.text != "GROUP":
            parts.append(word)
    if parts:
        names.append(normalise_name(parts))
    return names


def _grantees(tail: list[Word]) -> tuple[tuple[str, ...], bool]:
    end = len(tail)
    option = False
    for i, word in enumerate(tail):
        if word.text in ("WITH", "GRANTED") and not word.is_string:
            end = min(end, i)
        if word.text == "WITH" and i + 1 < len(tail):
            following = [w.text for w in tail[i + 1 : i + 3]]
            if following[:1] in (["GRANT"], ["ADMIN"]) and following[1:] != ["FALSE"]:
                option = True
    return tuple(_names(tail[:end])), option
