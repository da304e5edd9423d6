"""PostgreSQL's own grammar as a cross-check of how the analysis read a statement.

The rules read sqlglot's syntax tree, and the statement boundaries come from
sqlglot's tokenizer (``statements.py``). sqlglot is not PostgreSQL's grammar: a
text it splits or classifies differently from the server is a text whose
analysis describes a different statement from the one that runs. So every
statement the analysis reads is also read by ``pglast`` (libpg_query: the
server's own scanner and parser, in C) and the two readings are compared:

* boundaries: PostgreSQL's scanner must see exactly one statement in the text
  the analysis judged as one (two means sqlglot merged them, a scanner error
  means sqlglot cut a token PostgreSQL reads whole);
* kind: when sqlglot produced a tree, PostgreSQL's top-level statement must be
  of the same family (a read is a ``SelectStmt``; an INSERT an ``InsertStmt``;
  a DROP a ``DropStmt``...; what sqlglot reads as a query PostgreSQL must read
  as a ``SelectStmt``), and every data-modifying statement PostgreSQL
  finds nested anywhere (a CTE, a rule action) must be one the tree holds too.

A disagreement is a finding (SO007, unanalysable: needs approval by default),
never a pass. A text PostgreSQL's parser rejects while its scanner reads one
statement is not a disagreement: the server will refuse it too (and the parser
here may be a newer major version than the server's), so sqlglot's reading
stands.

Why not let PostgreSQL's grammar do the splitting and keep sqlglot only for the
rules? Measured on this machine (10,000 generated migration statements,
``bench/lint_speed.py``'s generator): sqlglot's split 285 ms, pglast's scanner
split 15 ms, its full parse to JSON 39 ms; one short UPDATE: sqlglot split
16.9 µs, pglast scanner 1.8 µs, parse 4-6 µs. The rules, the spans, the
fingerprints and the plan diff all hang off sqlglot's tokens, so replacing the
splitter would mean two token streams to reconcile for every finding's line
number; the cross-check gives the security property (the analysis and the
server agree on what the statement is, or it is refused) at a few microseconds
per statement the analysis reads (cached decisions do not repeat it), with
sqlglot's 0-disagreement record on the lint corpus kept. Decided: cross-check,
not replace.

One call into libpg_query per statement, not two, and one parse shared: a text
with no semicolon in it (92% of the benchmark's) has nothing for the scanner to
split at, so it goes to the parser alone, and only when that does not read
exactly one statement is the scanner asked as well (the reading is then the
one the two-call path gives). ``parse_json`` remembers the last text's parse,
so the function-call finder (``functions.calls_in``, asked first once the plan
or the catalog knows a function) and this cross-check parse a statement once.
Measured on this machine (the same 10,000 statements, best of five, in
process): the scanner split 14-22 ms, the parse to JSON 24-30 ms, this
module's reading 71 ms with both calls, 56 ms with one; a migration defining
one function with 5,000 statements after it: 4,401 parses instead of 6,074.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pglast import parser as pg_parser
from sqlglot import exp

# PostgreSQL node -> the sqlglot node types that read the same kind of statement.
_FAMILIES: dict[str, tuple[type[exp.Expression], ...]] = {
    "SelectStmt": (exp.Select, exp.SetOperation, exp.Values, exp.Subquery, exp.Table),
    "InsertStmt": (exp.Insert,),
    "UpdateStmt": (exp.Update,),
    "DeleteStmt": (exp.Delete,),
    "MergeStmt": (exp.Merge,),
    "DropStmt": (exp.Drop,),
    "TruncateStmt": (exp.TruncateTable,),
}
# Data-modifying statements PostgreSQL may find nested inside another.
_WRITES: dict[str, type[exp.Expression]] = {
    "InsertStmt": exp.Insert,
    "UpdateStmt": exp.Update,
    "DeleteStmt": exp.Delete,
    "MergeStmt": exp.Merge,
}


_WRITE_KEYS = {name: f'"{name}"' for name in _WRITES}


@dataclass(frozen=True)
class PgReading:
    """How PostgreSQL's grammar reads one statement's text."""

    statements: int  # as its scanner splits the text
    scanner_error: str | None = None
    node: str | None = None  # top-level node type, when its parser accepts the text
    nested_writes: frozenset[str] = frozenset()  # data-modifying nodes below the top


def read(text: str) -> PgReading:
    """How PostgreSQL's grammar reads ``text`` (a short text seen before: from memory;
    migrations repeat BEGIN, COMMIT, SET lock_timeout...)."""
    return _read_short(text) if len(text) <= _SHORT_TEXT else _read(text)


_SHORT_TEXT = 256  # what is remembered: bounded (4096 entries of at most this)

# The last text given to PostgreSQL's parser and what came back (its JSON, or the
# error): the function-call finder (functions.calls_in) and the cross-check read
# the same statement one after the other, so it is parsed once. One entry,
# replaced whole (threads may share it).
_LAST_PARSE: tuple[str | None, str | None, pg_parser.ParseError | None] = (None, None, None)


def parse_json(text: str) -> str:
    """``pglast.parser.parse_sql_json(text)``, remembered for the last text."""
    global _LAST_PARSE
    last_text, document, error = _LAST_PARSE
    if last_text is not None and last_text == text:
        if error is not None:
            raise error
        if document is not None:
            return document
    try:
        document = pg_parser.parse_sql_json(text)
    except pg_parser.ParseError as failed:
        _LAST_PARSE = (text, None, failed)
        raise
    _LAST_PARSE = (text, document, None)
    return document


def _read(text: str) -> PgReading:
    if ";" not in text:
        # No semicolon anywhere (most statements): the scanner has nothing to split
        # at, so when the parser (which scans the whole text) reads one statement,
        # the scanner's split is that one piece; one call into libpg_query, not two.
        try:
            document = parse_json(text)
        except pg_parser.ParseError:
            pass  # scanner or parser error: told apart below
        else:
            reading = _reading_of(document)
            if reading.statements == 1:
                return reading
    try:
        pieces = [piece for piece in pg_parser.split(text, with_parser=False) if piece.strip()]
    except pg_parser.ParseError as error:
        return PgReading(statements=0, scanner_error=_first_line(error))
    if len(pieces) != 1:
        return PgReading(statements=len(pieces))
    try:
        document = parse_json(text)
    except pg_parser.ParseError:
        return PgReading(statements=1)
    return _reading_of(document)


def _reading_of(document: str) -> PgReading:
    """The reading of a text its scanner splits into one statement, from its parse."""
    node = _lone_top_node(document)
    if node is not None:  # no write node anywhere in it: nothing more to read
        return PgReading(statements=1, node=node)
    tree = json.loads(document)
    statements = tree.get("stmts") or []
    if len(statements) != 1:
        return PgReading(statements=len(statements))
    top: dict[str, Any] = statements[0].get("stmt") or {}
    (node, body), *_ = top.items() if top else (("", {}),)
    # Most statements hold no write node at all: then the tree need not be walked (a
    # node's name is a key, so it is in the document as "Name" whenever it is in the tree).
    nested = (
        frozenset(_writes_in(body))
        if any(_WRITE_KEYS[name] in document for name in _WRITES)
        else frozenset()
    )
    return PgReading(statements=1, node=node, nested_writes=nested)


_read_short = functools.lru_cache(maxsize=4096)(_read)


def _lone_top_node(document: str) -> str | None:
    """The top node of libpg_query's JSON for one statement with no write node below
    it, read off the document without decoding it (most statements of a migration);
    None when that is not plainly so (then the document is decoded). Every key is in
    the document as "Key" (so is a string value spelt so: then it is decoded), so
    when the write nodes' names occur no more often than the top node's own, none is
    below it."""
    if document.count('"stmt":') != 1:
        return None
    head = document.index('"stmt":') + len('"stmt":')
    if not document.startswith('{"', head):
        return None
    end = document.find('"', head + 2)
    if end <= head + 2:
        return None
    node = document[head + 2 : end]
    writes = sum(document.count(key) for key in _WRITE_KEYS.values())
    return node if writes == (1 if node in _WRITES else 0) else None


def disagreement(text: str, tree: exp.Expression | None) -> str | None:
    """Why PostgreSQL's grammar reads ``text`` differently from ``tree`` (None: it agrees)."""
    reading = read(text)
    if reading.scanner_error is not None:
        return f"PostgreSQL's scanner cannot read it as one statement ({reading.scanner_error})"
    if reading.statements != 1:
        return (
            f"PostgreSQL's scanner reads {reading.statements} statements"
            " where the analysis read one"
        )
    if tree is None or reading.node is None:
        return None
    family = _FAMILIES.get(reading.node)
    reads_only = isinstance(tree, _FAMILIES["SelectStmt"])
    if (family is not None and not isinstance(tree, family)) or (
        reads_only and reading.node != "SelectStmt"
    ):
        return (
            f"PostgreSQL reads it as {_plain(reading.node)}, "
            f"the analysis as {type(tree).__name__.upper()}"
        )
    if not reading.nested_writes:
        return None  # nothing nested to look for in the tree (the common case)
    seen = {type(node) for node in tree.find_all(*_WRITES.values())}
    for missing in sorted(reading.nested_writes):
        if _WRITES[missing] not in seen:
            return f"PostgreSQL finds {_plain(missing)} inside it, which the analysis did not read"
    return None


def _writes_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _WRITES:
                yield key
            yield from _writes_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _writes_in(value)


def _plain(node: str) -> str:
    return node.removesuffix("Stmt").upper()


def _first_line(error: Exception) -> str:
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__
