"""Decide each statement that reaches the gateway, with the planner's own analysis.

One room for the decision: the service asks ``GatewayPolicy.decide(session, sql,
in_transaction=..., lanes=...)`` once per text a client sends and gets one
``StatementDecision`` per statement, in order; every cache behind the answer lives
here. Follow one text through it (``decide.SessionPolicy.decide``):

1. The session's state (``SessionPolicy``: its analysis and its caches) is made at
   its first text, from the server's facts (version, catalog) read once per
   database.
2. Exact-text cache (``caches.SessionCaches.allowed_texts``): the text was one plain
   read this session's role allowed (same transaction state) -> that very decision,
   nothing tokenized.
3. Literal guard (``guard``): a text that might touch standard_conforming_strings is
   split, every statement analysed (no cache: its literal values matter) and one
   that could turn it off refused. Done.
4. Literal mask (``caches.literal_shape``: the text with its literals replaced by
   ``?``, made in C where it can be): an allowed plain read of the same mask ->
   an ALLOW with this text's sha256, nothing split or fingerprinted.
5. Split into statements; for each, in order:
   a. a plain read (``analysis.plain_read``: a SELECT with no data-modifying or
      locking keyword and no comment) whose fingerprint the role allowed -> ALLOW
      from ``allowed_reads``;
   b. otherwise the session's ``Analysis`` (the same engine as ``signoff plan``,
      so a table the session created is new and a transaction is a transaction;
      a plain read's findings are cached by fingerprint) judges it: findings, and
      what it changes once it has run (``analysis.Effect``, carried on the
      decision). The state changes only when the server confirms that statement
      (its CommandComplete, seen by the relay), is taken back by ROLLBACK and
      ROLLBACK TO SAVEPOINT, and counts its changes (``generation``: a prepared
      statement is decided again at Execute once it moved). Statements of one
      text are judged as if those before had run, on a copy;
   c. the role maps every finding to allow, needs-approval or deny
      (``decide.role_verdict``); a needs-approval statement runs only with a grant
      for its fingerprint, looked up and used up now (``decide.decide_statement``):
      a grant covers one run;
   d. an ALLOW without a grant on a plain read is remembered by fingerprint, and,
      when the text was that one statement, by exact text and mask; with ``lanes``
      and outside a transaction, also in the two caches the proxy's C fast lane
      reads itself (``GatewayPolicy.lane_caches``, handed to it in ``FastLane``).
      Nothing that needed or used a grant is ever cached.

Cached verdicts on reads stop holding once an enum got a label in the session
(a read of it is judged differently then): from there every read is analysed
again and the C lane's caches are emptied for good. The server's ReadyForQuery
status is the truth about the transaction: the analysis follows it.
"""

from __future__ import annotations

from .analysis import ServerFacts, SessionAnalysis, plain_read
from .caches import LaneEntryData, SessionCaches, literal_shape
from .decide import (
    EntryData,
    GatewayPolicy,
    GrantLookup,
    SessionPolicy,
    decide_statement,
    role_verdict,
    split,
)
from .guard import LITERAL_GUARD_WORDS, SCS_REFUSAL, literal_reading_refusal, needs_literal_guard

__all__ = [
    "LITERAL_GUARD_WORDS",
    "SCS_REFUSAL",
    "EntryData",
    "GatewayPolicy",
    "GrantLookup",
    "LaneEntryData",
    "ServerFacts",
    "SessionAnalysis",
    "SessionCaches",
    "SessionPolicy",
    "decide_statement",
    "literal_reading_refusal",
    "literal_shape",
    "needs_literal_guard",
    "plain_read",
    "role_verdict",
    "split",
]
