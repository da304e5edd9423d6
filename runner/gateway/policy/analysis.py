"""One session's run of the planner's analysis, and its cache of plain reads' findings.

A session's statements are analysed in order by one ``Analysis`` (the same engine
as ``signoff plan``), so a table the session created is new and a transaction is a
transaction. A plain read (SELECT with no data-modifying or locking keyword) is
judged the same whatever its literal values, so its findings are cached by
fingerprint; everything else is analysed every time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlglot.tokenizer_core import TokenType

from runner.plan.analyse import AnalysedStatement, Analysis
from runner.plan.model import Finding
from runner.plan.policy import Policy
from runner.plan.schema import SchemaState
from runner.plan.statements import RawStatement

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
READ_CACHE_SIZE = 4096

# (fingerprint, in a transaction?): the key of a plain read's cached judgement.
ReadKey = tuple[str, bool]


def plain_read(raw: RawStatement) -> bool:
    """A SELECT that reads only, with no comment: a comment may hold a signoff
    directive, which changes the findings but not the fingerprint."""
    tokens = raw.tokens
    if not tokens or tokens[0].token_type is not TokenType.SELECT or raw.comments:
        return False
    return not any(t.token_type in _NOT_A_PLAIN_READ for t in tokens)


@dataclass(frozen=True)
class ServerFacts:
    """What the analysis knows of the server: its version and catalog (table ->
    column -> type); ``None`` and ``{}`` when unreadable (the planner's worst case)."""

    server_version: int | None
    columns: Mapping[str, Mapping[str, str]]


@dataclass
class SessionAnalysis:
    """One session's analysis state: statements are judged in the order they run."""

    analysis: Analysis
    read_cache: OrderedDict[ReadKey, tuple[Finding, ...]] = field(default_factory=OrderedDict)

    @classmethod
    def start(
        cls,
        *,
        server_version: int | None,
        columns: Mapping[str, Mapping[str, str]],
        lock_timeout: bool = False,
    ) -> SessionAnalysis:
        """``lock_timeout``: the session's role puts a non-zero lock_timeout in force
        on its upstream connections (without one, assume none: a client's own startup
        setting or the server's default may be 0)."""
        return cls(
            Analysis(
                Policy(apply_lock_timeout=lock_timeout),
                server_version=server_version,
                schema=SchemaState.from_catalog(columns),
            )
        )

    @property
    def reads_hold(self) -> bool:
        """Whether a verdict cached on a plain read still holds: not once an enum got
        a label in this session (a read of it is then judged again, every time; the
        set of added labels only grows)."""
        return not self.analysis.context.enum_labels_added

    def read_key(self, raw: RawStatement, *, in_transaction: bool) -> ReadKey | None:
        """The cache key of a plain read (None: analyse it), keeping the session in step."""
        self._sync_transaction(in_transaction)
        if plain_read(raw) and not self.analysis.context.enum_labels_added:
            return (raw.fingerprint, in_transaction)
        return None

    def cached_reads_hold(self, in_transaction: bool) -> bool:
        """Keep the session in step; whether a cached verdict on a plain read still
        holds (see ``reads_hold``)."""
        self._sync_transaction(in_transaction)
        return not self.analysis.context.enum_labels_added

    def findings(
        self, raw: RawStatement, *, in_transaction: bool
    ) -> tuple[str, tuple[Finding, ...]]:
        """(kind, findings) of one statement, keeping the session's state in step."""
        self._sync_transaction(in_transaction)
        if plain_read(raw) and not self.analysis.context.enum_labels_added:
            key = (raw.fingerprint, in_transaction)
            cached = self.read_cache.get(key)
            if cached is not None:
                self.read_cache.move_to_end(key)
                return "select", cached
            read = self.analysis.analyse_one(raw)
            self.read_cache[key] = read.findings
            if len(self.read_cache) > READ_CACHE_SIZE:
                self.read_cache.popitem(last=False)
            return read.kind, read.findings
        result: AnalysedStatement = self.analysis.analyse_one(raw)
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
