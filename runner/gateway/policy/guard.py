"""The literal guard: nothing that could turn standard_conforming_strings off runs.

The splitter and the analysis read '...' as PostgreSQL does with
standard_conforming_strings on (a backslash is an ordinary character). With it
off, "SELECT 'a\\''; DROP TABLE t; --'" is one harmless string to the gateway
and a DROP to the server. So nothing that could turn it off is forwarded (and the
proxy refuses everything once the server reports it off, however that happened).

``needs_literal_guard`` is the cheap test on the whole text (the C lane makes the
same one, runner/_lane.c); a text that passes it is decided statement by statement,
never from a cache, and ``literal_reading_refusal`` judges each statement.
"""

from __future__ import annotations

from sqlglot.tokenizer_core import TokenType

from runner.plan.statements import RawStatement

_SCS = "standard_conforming_strings"
SCS_REFUSAL = (
    "changing standard_conforming_strings is refused: with it off the server reads "
    "backslashes in string literals differently from the gateway's analysis"
)


# Lower-case ASCII: the C lane (runner/_native) is handed these and folds A-Z.
LITERAL_GUARD_WORDS: tuple[str, ...] = ("conforming", "set_config", "u&")


def needs_literal_guard(sql: str) -> bool:
    """Whether ``sql`` might touch standard_conforming_strings: then it is decided
    statement by statement, never from a cache (literal values matter here)."""
    lowered = sql.lower()
    # A loop, not any() over a generator: this runs on nearly every text the relay
    # decides (0.4 us against 2 us here).
    for word in LITERAL_GUARD_WORDS:  # noqa: SIM110
        if word in lowered:
            return True
    return False


def literal_reading_refusal(raw: RawStatement) -> str | None:
    """Why ``raw`` is refused for what it could do to standard_conforming_strings;
    None when it cannot change it (SHOW may read it)."""
    tokens = raw.tokens
    if not tokens:
        return None  # unanalysable: refused (needs approval) by the analysis anyway
    first = tokens[0].text.upper()
    if first == "SHOW":
        return None
    source = raw.source_text
    if first in ("SET", "RESET", "ALTER") and any(
        source[t.start : t.start + 2].lower() == "u&" for t in tokens
    ):
        return SCS_REFUSAL + " (a setting spelt with Unicode escapes is refused)"
    for index, token in enumerate(tokens):
        text = token.text.lower()
        if _SCS in text:
            return SCS_REFUSAL
        if text == "set_config" and index + 1 < len(tokens):
            # Its setting name must be a plain '...' literal (not computed, not
            # escaped), so the check above has read it.
            following = tokens[index + 1 : index + 4]
            plain_name = (
                len(following) == 3
                and following[0].token_type is TokenType.L_PAREN
                and following[1].token_type is TokenType.STRING
                and source[following[1].start : following[1].start + 1] == "'"
                and following[2].token_type is TokenType.COMMA
            )
            if not plain_name:
                return SCS_REFUSAL + " (set_config with a setting name that is not a plain literal)"
    return None
