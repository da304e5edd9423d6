"""Where a ``COPY`` reads or writes, from its tokens; no rule of its own.

``COPY table|(query) [(columns)] {TO|FROM} {PROGRAM 'command' | 'file' | STDIN | STDOUT}``:
the first ``TO`` / ``FROM`` outside parentheses says the direction, the word after
it the other end. sqlglot's tree reads ``PROGRAM`` as a file name, so tokens decide.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot.tokenizer_core import TokenType

from runner.plan.commands import words
from runner.plan.rules.base import StatementView


@dataclass(frozen=True)
class CopyEnd:
    direction: str  # "TO" or "FROM"
    kind: str  # "program", "file", "client" (STDIN / STDOUT), "unknown"
    where: str  # the command or file as written, or STDIN / STDOUT


def copy_end(view: StatementView) -> CopyEnd | None:
    ws = words(view.raw.tokens)
    if not ws or ws[0].text != "COPY":
        return None
    depth = 0
    for i, word in enumerate(ws[1:], start=1):
        kind = word.token.token_type
        if kind is TokenType.L_PAREN:
            depth += 1
        elif kind is TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and word.text in ("TO", "FROM") and not word.is_string:
            rest = ws[i + 1 :]
            if not rest:
                return CopyEnd(word.text, "unknown", "")
            head = rest[0]
            if head.is_string:
                return CopyEnd(word.text, "file", head.text)
            if head.text == "PROGRAM":
                command = rest[1].text if len(rest) > 1 and rest[1].is_string else "?"
                return CopyEnd(word.text, "program", command)
            if head.text in ("STDIN", "STDOUT"):
                return CopyEnd(word.text, "client", head.text)
            return CopyEnd(word.text, "unknown", head.token.text)
    return None
