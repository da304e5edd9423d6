"""A session's caches of ALLOW decisions on plain reads, and the literal mask that keys one.

Only a decision that is ALLOW without a grant on one plain read is ever kept (the
decider checks; a grant covers one run, so a statement that needs or uses one is
decided every time). Four keys lead to it, from the cheapest to reach:

* the exact text, when it is that one statement (a driver's repeated text is not
  even tokenized again): ``allowed_texts``;
* the text's literal mask (the text with its literals replaced by ``?``): the same
  query with other literal values is only tokenized, not split and fingerprinted:
  ``allowed_shapes``;
* the statement's fingerprint, once split: ``allowed_reads``;
* and for the proxy's C fast lane (runner/_lane.c), which reads these two dicts
  itself through ``FastLane``, outside a transaction only: ``lane_shapes`` (mask
  made in C -> the statement entry's data up to its sha256) and ``lane_texts``
  (exact text -> (the statement entry's data, the decision)).

Every key but the fingerprint's also says whether the session was in a
transaction (the lane's caches are for outside one only): the findings differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot.errors import TokenError
from sqlglot.tokenizer_core import Token

from runner._native.loader import native as _native
from runner.gateway.model import StatementDecision
from runner.plan.statements import literal_shape as token_literal_shape
from runner.plan.statements import tokenize

from .analysis import ReadKey

FindingsJson = tuple[Mapping[str, Any], ...]
# Per session at most this many fingerprints, and this many texts (and masks) of at
# most this length, each cache forgetting its oldest entry first.
ALLOWED_READS_SIZE = 4096
TEXT_CACHE_SIZE = 1024
TEXT_CACHE_MAX_CHARS = 2048


def literal_shape(sql: str) -> tuple[str | None, str | None, bool, list[Token] | None]:
    """(literal mask, single-statement text, made in C?, sqlglot tokens if read) of
    ``sql``: from C when it can read the text plainly (its masks are a keyspace of
    their own), else from sqlglot's tokens; no mask when those fail too (split then
    makes it an unanalysable statement)."""
    if _native is not None:
        plain = _native.literal_shape(sql)
        if plain is not None:
            return plain[0], sql[plain[1] : plain[2]], True, None
    try:
        tokens = tokenize(sql)
    except TokenError:
        return None, None, False, None
    mask, text = token_literal_shape(sql, tokens)
    return mask, text, False, tokens


@dataclass(frozen=True)
class LaneEntryData:
    """How the audit log writes a statement entry's data (whole, and up to its sha256),
    for the lane caches: the lane writes the entries of what it decides itself."""

    whole: Callable[[StatementDecision], str]
    prefix: Callable[[StatementDecision], str]


@dataclass
class SessionCaches:
    """One session's cached ALLOW decisions on plain reads (see the module docstring)."""

    # (fingerprint, in_transaction) -> findings JSON of a plain read the role allows.
    allowed_reads: dict[ReadKey, FindingsJson] = field(default_factory=dict)
    # (exact text, in_transaction) -> the ALLOW decision on that text, one plain read.
    allowed_texts: dict[tuple[str, bool], StatementDecision] = field(default_factory=dict)
    # (literal mask, made in C?, in_transaction) -> (fingerprint, findings JSON).
    allowed_shapes: dict[tuple[str, bool, bool], tuple[str, FindingsJson]] = field(
        default_factory=dict
    )
    # Read by the C lane, shared by the session's connections: never rebound, only
    # changed in place (each lane holds these very dicts).
    lane_shapes: dict[str, str] = field(default_factory=dict)
    lane_texts: dict[str, tuple[str, StatementDecision]] = field(default_factory=dict)

    def remember_read(self, key: ReadKey, findings_json: FindingsJson) -> None:
        """An ALLOW verdict on a plain read: the same fingerprint gets the same
        findings, hence the same verdict."""
        allowed = self.allowed_reads
        allowed[key] = findings_json
        if len(allowed) > ALLOWED_READS_SIZE:
            del allowed[next(iter(allowed))]

    def remember_single(
        self,
        sql: str,
        mask: str | None,
        native: bool,
        decision: StatementDecision,
        *,
        in_transaction: bool,
        lane: LaneEntryData | None,
    ) -> None:
        """An ALLOW on ``sql``, one plain read: by its exact text and its literal mask
        (and with ``lane``, for the C lane, which serves only masks made in C, outside
        transactions)."""
        if len(sql) <= TEXT_CACHE_MAX_CHARS:
            _put(self.allowed_texts, (sql, in_transaction), decision)
            if lane is not None and not in_transaction:
                _put(self.lane_texts, sql, (lane.whole(decision), decision))
        if mask is not None and len(mask) <= TEXT_CACHE_MAX_CHARS:
            _put(
                self.allowed_shapes,
                (mask, native, in_transaction),
                (decision.fingerprint, decision.findings),
            )
            if lane is not None and native and not in_transaction:
                _put(self.lane_shapes, mask, lane.prefix(decision))

    def forget_lanes(self) -> None:
        """Cached verdicts on reads stopped holding: the C lane must not serve them."""
        self.lane_shapes.clear()
        self.lane_texts.clear()


def _put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    if len(cache) > TEXT_CACHE_SIZE:
        del cache[next(iter(cache))]
