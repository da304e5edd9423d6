"""Decide each statement that reaches the gateway, with the planner's own analysis.

A session's statements are analysed in order by one ``Analysis`` (the same
engine as ``signoff plan``), so a table the session created is new, a
transaction is a transaction, and a plan that needed no approval at planning
time needs none here. The role then maps every finding to allow,
needs-approval or deny; a needs-approval statement runs only if a grant for
its fingerprint exists, and uses it up.

Speed: a plain read (SELECT with no data-modifying or locking keyword) is
judged the same whatever its literal values, so its findings are cached by
fingerprint, and so is an ALLOW decision on it (a decision that needs or
uses a grant never is), also by its exact text when the text is that one
statement (not even tokenized again) and by the text's literal mask (the text
with its literals replaced by ``?``: only tokenized, not split and
fingerprinted); everything else is analysed every time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlglot.tokenizer_core import Token, TokenType

from runner.gateway.config import RoleConfig
from runner.gateway.model import AuditDecision, Grant, StatementDecision, Verdict
from runner.plan.analyse import AnalysedStatement, Analysis
from runner.plan.model import Finding
from runner.plan.policy import Policy
from runner.plan.schema import SchemaState
from runner.plan.statements import RawStatement, split_statements

# Tokens that make a SELECT more than a plain read: writes (data-modifying
# CTEs, SELECT INTO), row locks, and anything the token classifier handles.
_NOT_A_PLAIN_READ = frozenset(
    {
        TokenType.DELETE,
        TokenType.UPDATE,
        TokenType.INSERT,
        TokenType.MERGE,
        TokenType.INTO,
        TokenType.FOR,
        TokenType.COMMAND,
        TokenType.EXECUTE,
        TokenType.LOCK,
        TokenType.DROP,
        TokenType.ALTER,
        TokenType.CREATE,
        TokenType.TRUNCATE,
        TokenType.SEMICOLON,
    }
)
_CACHE_SIZE = 4096
# The exact-text cache: per session at most this many texts of at most this length.
_TEXT_CACHE_SIZE = 1024
_TEXT_CACHE_MAX_CHARS = 2048


def plain_read(raw: RawStatement) -> bool:
    """A SELECT that reads only, with no comment: a comment may hold a signoff
    directive, which changes the findings but not the fingerprint."""
    tokens = raw.tokens
    if not tokens or tokens[0].token_type is not TokenType.SELECT or raw.comments:
        return False
    return not any(t.token_type in _NOT_A_PLAIN_READ for t in tokens)


GrantLookup = Callable[[str, str, str, datetime], Grant | None]

# The splitter and the analysis read '...' as PostgreSQL does with
# standard_conforming_strings on (a backslash is an ordinary character). With it
# off, "SELECT 'a\\''; DROP TABLE t; --'" is one harmless string to the gateway
# and a DROP to the server. So nothing that could turn it off is forwarded (and the
# proxy refuses everything once the server reports it off, however that happened).
_SCS = "standard_conforming_strings"
SCS_REFUSAL = (
    "changing standard_conforming_strings is refused: with it off the server reads "
    "backslashes in string literals differently from the gateway's analysis"
)


def needs_literal_guard(sql: str) -> bool:
    """Whether ``sql`` might touch standard_conforming_strings: then it is decided
    statement by statement, never from a cache (literal values matter here)."""
    lowered = sql.lower()
    return "conforming" in lowered or "set_config" in lowered or "u&" in lowered


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


@dataclass
class SessionAnalysis:
    """One session's analysis state: statements are judged in the order they run."""

    analysis: Analysis
    read_cache: OrderedDict[tuple[str, bool], tuple[Finding, ...]] = field(
        default_factory=OrderedDict
    )
    # (fingerprint, in_transaction) -> findings JSON of a plain read the role allows.
    allowed_reads: dict[tuple[str, bool], tuple[Mapping[str, Any], ...]] = field(
        default_factory=dict
    )
    # (exact text, in_transaction) -> the ALLOW decision on that text, when it is
    # one plain read: a repeated text (a driver's prepared statement) is not even split.
    allowed_texts: dict[tuple[str, bool], StatementDecision] = field(default_factory=dict)
    # (literal mask of the text, made in C?, in_transaction) -> (fingerprint, findings JSON) of
    # one plain read the role allowed: the same query with other literal values
    # (a client that inlines them) is only tokenized, not split and fingerprinted.
    allowed_shapes: dict[tuple[str, bool, bool], tuple[str, tuple[Mapping[str, Any], ...]]] = field(
        default_factory=dict
    )
    # The proxy's C fast lane reads this one (runner/_lane.c): literal mask (made in C,
    # outside a transaction) -> the statement entry's data up to its sha256, for the
    # same ALLOW decisions as allowed_shapes. Shared by the session's connections;
    # emptied for good once cached verdicts on reads stop holding (_cached_reads_hold).
    lane_shapes: dict[str, str] = field(default_factory=dict)
    # ... and for the extended protocol: exact text (outside a transaction) -> (the
    # statement entry's data, the ALLOW decision), as allowed_texts holds it.
    lane_texts: dict[str, tuple[str, StatementDecision]] = field(default_factory=dict)

    @classmethod
    def start(
        cls, *, server_version: int | None, columns: Mapping[str, Mapping[str, str]]
    ) -> SessionAnalysis:
        return cls(
            Analysis(
                Policy(apply_lock_timeout=True),
                server_version=server_version,
                schema=SchemaState.from_catalog(columns),
            )
        )

    def read_key(self, raw: RawStatement, *, in_transaction: bool) -> tuple[str, bool] | None:
        """The cache key of a plain read (None: analyse it), keeping the session in step."""
        self._sync_transaction(in_transaction)
        if plain_read(raw) and not self.analysis.context.enum_labels_added:
            return (raw.fingerprint, in_transaction)
        return None

    def allowed_text(self, sql: str, *, in_transaction: bool) -> StatementDecision | None:
        """The cached ALLOW decision on ``sql`` (one plain read), keeping the session in step;
        None: split and decide it."""
        decision = self.allowed_texts.get((sql, in_transaction))
        if decision is None or not self._cached_reads_hold(in_transaction):
            return None
        return decision

    def remember_allowed_text(
        self, sql: str, decision: StatementDecision, *, in_transaction: bool
    ) -> None:
        """Remember the ALLOW decision on ``sql``, which split into that one plain read
        (the caller checked: read_key gave a key and no grant was involved)."""
        if len(sql) > _TEXT_CACHE_MAX_CHARS:
            return
        texts = self.allowed_texts
        texts[(sql, in_transaction)] = decision
        if len(texts) > _TEXT_CACHE_SIZE:
            del texts[next(iter(texts))]

    def allowed_shape(
        self, mask: str, *, native: bool, in_transaction: bool
    ) -> tuple[str, tuple[Mapping[str, Any], ...]] | None:
        """(fingerprint, findings JSON) of the allowed plain read whose text has this
        literal mask (``native``: made by runner._speedups, whose masks are kept apart
        from sqlglot-token masks), keeping the session in step; None: split and decide it."""
        known = self.allowed_shapes.get((mask, native, in_transaction))
        if known is None or not self._cached_reads_hold(in_transaction):
            return None
        return known

    def _cached_reads_hold(self, in_transaction: bool) -> bool:
        """Keep the session in step; whether a cached verdict on a plain read still
        holds (not once an enum got a label: reads are analysed again, see read_key)."""
        self._sync_transaction(in_transaction)
        return not self.analysis.context.enum_labels_added

    def remember_allowed_shape(
        self, mask: str, decision: StatementDecision, *, native: bool, in_transaction: bool
    ) -> None:
        """Remember an ALLOW decision on one plain read by its text's literal mask (the
        caller checked: read_key gave a key and no grant was involved)."""
        if len(mask) > _TEXT_CACHE_MAX_CHARS:
            return
        shapes = self.allowed_shapes
        shapes[(mask, native, in_transaction)] = (decision.fingerprint, decision.findings)
        if len(shapes) > _TEXT_CACHE_SIZE:
            del shapes[next(iter(shapes))]

    def remember_lane_shape(self, mask: str, prefix: str) -> None:
        """What the C lane needs to serve an allowed plain read by its literal mask (the
        caller checked it as for remember_allowed_shape, outside a transaction)."""
        if len(mask) > _TEXT_CACHE_MAX_CHARS or self.analysis.context.enum_labels_added:
            return
        shapes = self.lane_shapes
        shapes[mask] = prefix
        if len(shapes) > _TEXT_CACHE_SIZE:
            del shapes[next(iter(shapes))]

    def remember_lane_text(self, sql: str, data: str, decision: StatementDecision) -> None:
        """What the C lane needs to serve ``sql`` (one allowed plain read, outside a
        transaction) when it comes as a Parse: its statement entry's data and decision."""
        if len(sql) > _TEXT_CACHE_MAX_CHARS or self.analysis.context.enum_labels_added:
            return
        texts = self.lane_texts
        texts[sql] = (data, decision)
        if len(texts) > _TEXT_CACHE_SIZE:
            del texts[next(iter(texts))]

    def allowed_read(self, key: tuple[str, bool]) -> tuple[Mapping[str, Any], ...] | None:
        """The findings (as JSON) of a plain read this session's role allowed."""
        return self.allowed_reads.get(key)

    def remember_allowed(
        self, key: tuple[str, bool], findings_json: tuple[Mapping[str, Any], ...]
    ) -> None:
        """Remember an ALLOW verdict on a plain read (never one that needed a grant):
        the same fingerprint gets the same findings, hence the same verdict."""
        allowed = self.allowed_reads
        allowed[key] = findings_json
        if len(allowed) > _CACHE_SIZE:
            del allowed[next(iter(allowed))]

    def findings(
        self, raw: RawStatement, *, in_transaction: bool
    ) -> tuple[str, tuple[Finding, ...]]:
        """(kind, findings) of one statement, keeping the session's state in step."""
        self._sync_transaction(in_transaction)
        context = self.analysis.context
        if plain_read(raw) and not context.enum_labels_added:
            key = (raw.fingerprint, in_transaction)
            cached = self.read_cache.get(key)
            if cached is not None:
                self.read_cache.move_to_end(key)
                return "select", cached
            read = self.analysis.analyse_one(raw)
            self.read_cache[key] = read.findings
            if len(self.read_cache) > _CACHE_SIZE:
                self.read_cache.popitem(last=False)
            return read.kind, read.findings
        result: AnalysedStatement = self.analysis.analyse_one(raw)
        if context.enum_labels_added:  # see _cached_reads_hold: the lane must not serve them
            self.lane_shapes.clear()
            self.lane_texts.clear()
        return result.kind, result.findings

    def _sync_transaction(self, in_transaction: bool) -> None:
        # The server's ReadyForQuery status is the truth: an error or a driver's
        # implicit BEGIN can move it without a statement the analysis saw.
        context = self.analysis.context
        if not in_transaction and context.transaction is not None:
            context.transaction = None
            context.not_valid_in_transaction.clear()
            context.local_lock_timeout = False
        elif in_transaction and context.transaction is None:
            context.transaction = -1


def role_verdict(role: RoleConfig, findings: tuple[Finding, ...]) -> tuple[Verdict, list[Finding]]:
    """The strictest verdict over the findings, and the findings that caused it."""
    worst = Verdict.ALLOW
    causes: list[Finding] = []
    rank = {Verdict.ALLOW: 0, Verdict.NEEDS_APPROVAL: 1, Verdict.DENY: 2}
    for finding in findings:
        verdict = role.verdict(finding.rule, finding.category)
        if rank[verdict] > rank[worst]:
            worst, causes = verdict, [finding]
        elif verdict is worst and verdict is not Verdict.ALLOW:
            causes.append(finding)
    return worst, causes


def decide_statement(
    raw: RawStatement,
    findings: tuple[Finding, ...],
    *,
    role: RoleConfig,
    database: str,
    session_id: str,
    now: datetime,
    consume_grant: GrantLookup,
) -> StatementDecision:
    verdict, causes = role_verdict(role, findings)
    findings_json: tuple[Mapping[str, Any], ...] = tuple(f.to_json() for f in findings)
    if verdict is Verdict.ALLOW:
        return StatementDecision(
            raw.text, raw.sha256, raw.fingerprint, findings_json, AuditDecision.ALLOWED
        )
    rules = ", ".join(f"{f.rule} {f.name}" for f in causes)
    if verdict is Verdict.DENY:
        return StatementDecision(
            raw.text,
            raw.sha256,
            raw.fingerprint,
            findings_json,
            AuditDecision.BLOCKED,
            reason=f"denied by role {role.name}: {rules}; no grant can allow it",
        )
    grant = consume_grant(database, raw.fingerprint, session_id, now)
    if grant is None:
        return StatementDecision(
            raw.text,
            raw.sha256,
            raw.fingerprint,
            findings_json,
            AuditDecision.BLOCKED,
            reason=(
                f"needs approval ({rules}); an approved plan or "
                f"`signoff gateway grant --database {database} --fingerprint "
                f"{raw.fingerprint}` allows it once"
            ),
        )
    return StatementDecision(
        raw.text,
        raw.sha256,
        raw.fingerprint,
        findings_json,
        AuditDecision.APPROVED,
        grant=grant,
    )


def split(sql: str, *, tokens: list[Token] | None = None) -> list[RawStatement]:
    return split_statements(sql, tokens=tokens)
