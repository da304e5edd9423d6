"""A token-level classifier for the statements sqlglot's parser does not model.

sqlglot returns ``exp.Command`` (or raises) for much of PostgreSQL's DDL:
``DO``, ``VACUUM``, ``REINDEX``, ``CLUSTER``, ``LOCK``, ``ALTER TYPE ... VALUE``,
``ALTER TABLE ... DETACH PARTITION`` and more. For those the analysis reads the
token stream (never the raw text: a keyword inside a string or a comment is not
a token) and matches it against the shapes below. A statement that matches no
shape gets kind ``None`` and the analysis reports it as unanalysable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlglot.tokenizer_core import Token, TokenType

_PUNCTUATION = frozenset(
    {
        TokenType.COMMA,
        TokenType.L_PAREN,
        TokenType.R_PAREN,
        TokenType.SEMICOLON,
        TokenType.EQ,
        TokenType.DOT,
    }
)
_STRINGS = frozenset({TokenType.STRING, TokenType.HEREDOC_STRING, TokenType.NATIONAL_STRING})


@dataclass(frozen=True)
class Word:
    """One token as the classifier sees it: keywords upper-cased, names as written."""

    text: str
    token: Token

    @property
    def is_string(self) -> bool:
        return self.token.token_type in _STRINGS

    @property
    def is_name(self) -> bool:
        kind = self.token.token_type
        return kind not in _PUNCTUATION and kind not in _STRINGS and kind is not TokenType.NUMBER


# The last statement's words: a dozen readers (the classifier, the state, the rules)
# ask for the words of the same token tuple, one after another. One entry, replaced
# whole (threads may share it: the gateway analyses large texts in workers).
_LAST_WORDS: tuple[Sequence[Token] | None, tuple[Word, ...]] = (None, ())


def word_text(token: Token) -> str:
    """The text ``words`` gives ``token`` (for a reader that needs only one word)."""
    if token.token_type is TokenType.IDENTIFIER:
        return '"' + token.text + '"'
    if token.token_type in _STRINGS:
        return token.text
    return token.text.upper()


def words(tokens: Sequence[Token]) -> list[Word]:
    global _LAST_WORDS
    last_tokens, last_words = _LAST_WORDS
    if tokens is last_tokens:
        return list(last_words)
    result = []
    for token in tokens:
        if token.token_type is TokenType.IDENTIFIER:
            result.append(Word('"' + token.text + '"', token))
        elif token.token_type in _STRINGS:
            result.append(Word(token.text, token))
        else:
            result.append(Word(token.text.upper(), token))
    if type(tokens) is tuple:  # a statement's own tokens (a list may be changed later)
        _LAST_WORDS = (tokens, tuple(result))
    return result


@dataclass(frozen=True)
class CommandShape:
    """What a token-classified statement is.

    ``kind`` is a stable snake_case name (``alter_table_detach_partition``);
    ``relation`` the main object it acts on, as written; ``flags`` the
    modifiers that change its risk (``concurrently``, ``cascade``, ``full``...).
    """

    kind: str
    relation: str | None = None
    flags: frozenset[str] = frozenset()
    args: tuple[str, ...] = field(default=())


def normalise_name(parts: Sequence[Word]) -> str:
    """``public."Users"`` -> ``public."Users"``; ``Public.Users`` -> ``public.users``."""
    out = []
    for word in parts:
        text = word.token.text
        out.append(
            '"' + text + '"' if word.token.token_type is TokenType.IDENTIFIER else text.lower()
        )
    return ".".join(out)


class _Cursor:
    def __init__(self, ws: list[Word]) -> None:
        self.ws = ws
        self.i = 0

    def peek(self, *texts: str) -> bool:
        return [w.text for w in self.ws[self.i : self.i + len(texts)]] == list(texts)

    def take(self, *texts: str) -> bool:
        if self.peek(*texts):
            self.i += len(texts)
            return True
        return False

    def name(self) -> str | None:
        """A possibly qualified name: name(.name)*."""
        parts: list[Word] = []
        while self.i < len(self.ws) and self.ws[self.i].is_name:
            parts.append(self.ws[self.i])
            self.i += 1
            if self.i < len(self.ws) and self.ws[self.i].token.token_type is TokenType.DOT:
                self.i += 1
                continue
            break
        return normalise_name(parts) if parts else None

    def rest(self) -> list[str]:
        return [w.text for w in self.ws[self.i :]]

    @property
    def done(self) -> bool:
        return self.i >= len(self.ws)


def _top_level_commas(ws: Sequence[Word]) -> int:
    depth = commas = 0
    for word in ws:
        kind = word.token.token_type
        if kind is TokenType.L_PAREN:
            depth += 1
        elif kind is TokenType.R_PAREN:
            depth -= 1
        elif kind is TokenType.COMMA and depth == 0:
            commas += 1
    return commas


def _flags(rest: Sequence[str], *names: str) -> frozenset[str]:
    return frozenset(n.lower() for n in names if n in rest)


# Statements whose first words alone say what they are, and that carry no risk
# the catalogue models beyond their kind.
_SIMPLE_PREFIXES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("START", "TRANSACTION"), "begin"),
    (("BEGIN",), "begin"),
    (("COMMIT", "PREPARED"), "commit_prepared"),
    (("COMMIT",), "commit"),
    (("END",), "commit"),
    (("ROLLBACK", "TO"), "savepoint"),  # ROLLBACK TO SAVEPOINT keeps the transaction
    (("ROLLBACK", "TRANSACTION", "TO"), "savepoint"),
    (("ROLLBACK", "WORK", "TO"), "savepoint"),
    (("ROLLBACK",), "rollback"),
    (("ABORT",), "rollback"),
    (("SAVEPOINT",), "savepoint"),
    (("RELEASE",), "savepoint"),
    (("DO",), "do"),
    (("ANALYZE",), "analyze"),
    (("ANALYSE",), "analyze"),
    (("CHECKPOINT",), "checkpoint"),
    (("SET",), "set"),
    (("RESET",), "reset"),
    (("SHOW",), "show"),
    (("NOTIFY",), "notify"),
    (("LISTEN",), "listen"),
    (("UNLISTEN",), "listen"),
    (("DISCARD",), "discard"),
    (("GRANT",), "grant"),
    (("REVOKE",), "revoke"),
    (("COMMENT", "ON"), "comment"),
    (("SECURITY", "LABEL"), "comment"),
    (("CREATE", "EXTENSION"), "create_extension"),
    (("ALTER", "EXTENSION"), "alter_extension"),
    (("DROP", "EXTENSION"), "drop_extension"),
    (("DROP", "OWNED"), "drop_owned"),
    (("REASSIGN", "OWNED"), "reassign_owned"),
    (("CREATE", "DOMAIN"), "create_domain"),
    (("ALTER", "DOMAIN"), "alter_domain"),
    (("DROP", "DOMAIN"), "drop_domain"),
    (("CREATE", "POLICY"), "create_policy"),
    (("ALTER", "POLICY"), "alter_policy"),
    (("DROP", "POLICY"), "drop_policy"),
    (("CREATE", "STATISTICS"), "create_statistics"),
    (("CREATE", "COLLATION"), "create_collation"),
    (("CREATE", "CAST"), "create_cast"),
    (("CREATE", "AGGREGATE"), "create_aggregate"),
    (("CREATE", "OR", "REPLACE", "AGGREGATE"), "create_aggregate"),
    # Before CREATE/ALTER/DROP USER: a user mapping is not a role.
    (("CREATE", "USER", "MAPPING"), "create_user_mapping"),
    (("ALTER", "USER", "MAPPING"), "alter_user_mapping"),
    (("DROP", "USER", "MAPPING"), "drop_user_mapping"),
    (("CREATE", "ROLE"), "create_role"),
    (("CREATE", "USER"), "create_role"),
    (("ALTER", "ROLE"), "alter_role"),
    (("ALTER", "USER"), "alter_role"),
    (("ALTER", "DEFAULT", "PRIVILEGES"), "alter_default_privileges"),
    (("ALTER", "SEQUENCE"), "alter_sequence"),
    (("ALTER", "FUNCTION"), "alter_function"),
    (("ALTER", "PROCEDURE"), "alter_function"),
    (("CREATE", "PUBLICATION"), "create_publication"),
    (("ALTER", "PUBLICATION"), "alter_publication"),
    (("DROP", "FUNCTION"), "drop_function"),
    (("DROP", "PROCEDURE"), "drop_function"),
    (("DROP", "AGGREGATE"), "drop_function"),
    (("DROP", "TRIGGER"), "drop_trigger"),
    (("DROP", "RULE"), "drop_rule"),
    (("DROP", "ROLE"), "drop_role"),
    (("DROP", "USER"), "drop_role"),
    (("DROP", "PUBLICATION"), "drop_publication"),
    (("DROP", "SUBSCRIPTION"), "drop_subscription"),
)


def classify(tokens: Sequence[Token]) -> CommandShape | None:
    """The shape of a statement from its tokens, or None when it is not known."""
    ws = words(tokens)
    if not ws:
        return None
    cursor = _Cursor(ws)
    special = _classify_special(cursor)
    if special is not None:
        return special
    for prefix, kind in _SIMPLE_PREFIXES:
        cursor.i = 0
        if cursor.take(*prefix):
            rest = cursor.rest()
            cursor.take("IF", "EXISTS") or cursor.take("IF", "NOT", "EXISTS")
            return CommandShape(
                kind,
                relation=cursor.name(),
                flags=_flags(rest, "CASCADE", "CONCURRENTLY", "IF"),
            )
    return None


def _classify_special(c: _Cursor) -> CommandShape | None:
    if c.take("VACUUM"):
        options = c.rest()
        full = "FULL" in options
        return CommandShape("vacuum", flags=frozenset({"full"}) if full else frozenset())
    if c.take("CLUSTER"):
        c.take("VERBOSE")
        return CommandShape("cluster", relation=c.name())
    if c.take("REINDEX"):
        return _reindex(c)
    if c.take("LOCK"):
        c.take("TABLE")
        c.take("ONLY")
        relation = c.name()
        rest = c.rest()
        mode = (
            " ".join(rest[rest.index("IN") + 1 : rest.index("MODE")])
            if ("IN" in rest and "MODE" in rest)
            else "ACCESS EXCLUSIVE"
        )
        return CommandShape("lock", relation=relation, args=(mode,))
    if c.take("REFRESH", "MATERIALIZED", "VIEW"):
        concurrently = c.take("CONCURRENTLY")
        return CommandShape(
            "refresh_materialized_view",
            relation=c.name(),
            flags=frozenset({"concurrently"}) if concurrently else frozenset(),
        )
    if c.take("ALTER", "TYPE"):
        return _alter_type(c)
    if c.take("ALTER", "SCHEMA"):
        name = c.name()
        if c.take("RENAME", "TO"):
            return CommandShape("alter_schema_rename", relation=name, args=(c.name() or "",))
        if c.take("OWNER", "TO"):
            return CommandShape("alter_schema_owner", relation=name)
        return None
    for kind in ("TABLE", "INDEX", "VIEW", "MATERIALIZED", "FOREIGN"):
        c.i = 0
        if c.take("ALTER", kind):
            if kind == "MATERIALIZED" and not c.take("VIEW"):
                return None
            if kind == "FOREIGN" and not c.take("TABLE"):
                return None
            return _alter_relation(c, kind.lower())
    c.i = 0
    if c.take("CREATE", "INDEX") or c.take("CREATE", "UNIQUE", "INDEX"):
        return _create_index(c)
    c.i = 0
    if c.take("DROP", "INDEX"):
        concurrently = c.take("CONCURRENTLY")
        rest = c.rest()
        flags = _flags(rest, "CASCADE", "IF")
        c.take("IF", "EXISTS")
        return CommandShape(
            "drop_index",
            relation=c.name(),
            flags=flags | ({"concurrently"} if concurrently else set()),
        )
    c.i = 0
    return None


def _create_index(c: _Cursor) -> CommandShape:
    # CREATE [UNIQUE] INDEX [CONCURRENTLY] [[IF NOT EXISTS] name] ON [ONLY] table ...
    # (sqlglot parses most of these; ON ONLY and NULLS NOT DISTINCT end up here).
    unique = c.ws[1].text == "UNIQUE"
    concurrently = c.take("CONCURRENTLY")
    c.take("IF", "NOT", "EXISTS")
    index = "" if c.peek("ON") else c.name() or ""
    c.take("ON")
    only = c.take("ONLY")
    flags = {"concurrently"} if concurrently else set()
    flags |= {"only"} if only else set()
    flags |= {"unique"} if unique else set()
    return CommandShape("create_index", relation=c.name(), flags=frozenset(flags), args=(index,))


def _reindex(c: _Cursor) -> CommandShape:
    # REINDEX [ (options) ] { INDEX | TABLE | SCHEMA | DATABASE | SYSTEM } [ CONCURRENTLY ] name
    options = c.rest()
    if c.peek("("):
        depth = 0
        while not c.done:
            text = c.ws[c.i].text
            depth += text == "("
            depth -= text == ")"
            c.i += 1
            if depth == 0:
                break
    target = c.ws[c.i].text.lower() if not c.done else ""
    c.i += 1
    concurrently = c.take("CONCURRENTLY") or "CONCURRENTLY" in options
    return CommandShape(
        "reindex",
        relation=c.name(),
        flags=frozenset({"concurrently"}) if concurrently else frozenset(),
        args=(target,),
    )


def _alter_type(c: _Cursor) -> CommandShape | None:
    name = c.name()
    if c.take("ADD", "VALUE"):
        c.take("IF", "NOT", "EXISTS")
        value = c.ws[c.i].text if not c.done else ""
        return CommandShape("alter_type_add_value", relation=name, args=(value,))
    if c.take("RENAME", "VALUE"):
        old = c.ws[c.i].text if not c.done else ""
        return CommandShape("alter_type_rename_value", relation=name, args=(old,))
    if c.take("RENAME", "TO"):
        return CommandShape("alter_type_rename", relation=name, args=(c.name() or "",))
    if c.take("RENAME", "ATTRIBUTE"):
        return CommandShape("alter_type_rename_attribute", relation=name)
    if c.take("SET", "SCHEMA"):
        return CommandShape("alter_type_set_schema", relation=name, args=(c.name() or "",))
    if c.take("OWNER", "TO"):
        return CommandShape("alter_type_owner", relation=name)
    return None


def _alter_relation(c: _Cursor, object_kind: str) -> CommandShape | None:
    """ALTER TABLE/INDEX/VIEW ... with one action; several actions are not guessed at."""
    if _top_level_commas(c.ws) and object_kind == "table":
        return None
    c.take("IF", "EXISTS")
    c.take("ONLY")
    name = c.name()
    c.take("*")
    prefix = "alter_" + object_kind.replace(" ", "_")
    if object_kind == "materialized":
        prefix = "alter_materialized_view"
    elif object_kind == "foreign":
        prefix = "alter_foreign_table"
    if c.take("DETACH", "PARTITION"):
        partition = c.name() or ""
        rest = c.rest()
        return CommandShape(
            prefix + "_detach_partition",
            relation=name,
            flags=_flags(rest, "CONCURRENTLY", "FINALIZE"),
            args=(partition,),
        )
    if c.take("ATTACH", "PARTITION"):
        return CommandShape(prefix + "_attach_partition", relation=name, args=(c.name() or "",))
    if c.take("SET", "SCHEMA"):
        return CommandShape(prefix + "_set_schema", relation=name, args=(c.name() or "",))
    if c.take("RENAME", "CONSTRAINT"):
        return CommandShape(prefix + "_rename_constraint", relation=name, args=(c.name() or "",))
    if c.take("RENAME", "TO"):
        return CommandShape(prefix + "_rename", relation=name, args=(c.name() or "",))
    if c.take("RENAME"):
        c.take("COLUMN")
        return CommandShape(prefix + "_rename_column", relation=name, args=(c.name() or "",))
    if c.take("VALIDATE", "CONSTRAINT"):
        return CommandShape(prefix + "_validate_constraint", relation=name, args=(c.name() or "",))
    if c.take("ADD", "CONSTRAINT"):
        constraint = c.name() or ""
        rest = c.rest()
        # sqlglot's tokenizer reads PRIMARY KEY as one token.
        keyed = "UNIQUE" in rest or "PRIMARY" in rest or "PRIMARY KEY" in rest
        if "USING" in rest and "INDEX" in rest and keyed:
            return CommandShape(
                prefix + "_add_constraint_using_index", relation=name, args=(constraint,)
            )
        return None
    if (
        c.peek("ADD", "UNIQUE", "USING", "INDEX")
        or c.peek("ADD", "PRIMARY", "KEY", "USING")
        or c.peek("ADD", "PRIMARY KEY", "USING")
    ):
        return CommandShape(prefix + "_add_constraint_using_index", relation=name)
    if c.take("OWNER", "TO"):
        return CommandShape(prefix + "_owner", relation=name)
    for words_, kind in (
        (("ENABLE", "ROW", "LEVEL", "SECURITY"), "_enable_rls"),
        (("DISABLE", "ROW", "LEVEL", "SECURITY"), "_disable_rls"),
        (("FORCE", "ROW", "LEVEL", "SECURITY"), "_enable_rls"),
        (("NO", "FORCE", "ROW", "LEVEL", "SECURITY"), "_disable_rls"),
        (("ENABLE", "TRIGGER"), "_enable_trigger"),
        (("ENABLE", "ALWAYS", "TRIGGER"), "_enable_trigger"),
        (("ENABLE", "REPLICA", "TRIGGER"), "_enable_trigger"),
        (("DISABLE", "TRIGGER"), "_disable_trigger"),
        (("REPLICA", "IDENTITY"), "_replica_identity"),
        (("CLUSTER", "ON"), "_cluster_on"),
        (("SET", "WITHOUT", "CLUSTER"), "_cluster_on"),
        (("SET", "ACCESS", "METHOD"), "_set_access_method"),
        (("SET", "TABLESPACE"), "_set_tablespace"),
        (("INHERIT",), "_inherit"),
        (("NO", "INHERIT"), "_no_inherit"),
        (("ALTER", "COLUMN"), "_alter_column"),
        (("ALTER",), "_alter_column"),
        (("SET", "("), "_set_storage_parameters"),
        (("RESET", "("), "_set_storage_parameters"),
        (("ATTACH", "PARTITION"), "_attach_partition"),
    ):
        if c.take(*words_):
            if kind == "_alter_column":
                return _alter_column(c, prefix, name)
            return CommandShape(prefix + kind, relation=name, args=(c.name() or "",))
    return None


def _alter_column(c: _Cursor, prefix: str, table: str | None) -> CommandShape | None:
    column = c.name() or ""
    rest = c.rest()
    shapes = (
        (("SET", "STATISTICS"), "_set_statistics"),
        (("SET", "STORAGE"), "_set_storage"),
        (("SET", "COMPRESSION"), "_set_storage"),
        (("SET", "("), "_set_options"),
        (("RESET", "("), "_set_options"),
        (("DROP", "IDENTITY"), "_drop_identity"),
        (("ADD", "GENERATED"), "_add_identity"),
        (("SET", "GENERATED"), "_set_identity"),
        (("RESTART",), "_set_identity"),
        (("DROP", "EXPRESSION"), "_drop_expression"),
    )
    for words_, kind in shapes:
        if rest[: len(words_)] == list(words_):
            return CommandShape(prefix + "_column" + kind, relation=table, args=(column,))
    for type_prefix in (["TYPE"], ["SET", "DATA", "TYPE"]):
        if rest[: len(type_prefix)] == type_prefix:
            # args: (column, the new type as written); flags: using, collate.
            type_words = rest[len(type_prefix) :]
            end = next(
                (i for i, w in enumerate(type_words) if w in ("USING", "COLLATE")), len(type_words)
            )
            return CommandShape(
                prefix + "_column_type",
                relation=table,
                flags=_flags(type_words[end:], "USING", "COLLATE"),
                args=(column, " ".join(type_words[:end])),
            )
    return None
