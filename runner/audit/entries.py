"""The entries the gateway writes, and their data.

The proxy records two entries per statement, each before or right after it runs:
their data is written straight as canonical JSON text (what ``canonical_json`` of
the dict below gives, byte for byte; tests/gateway/test_gateway_entry_data.py checks both)
rather than as a dict the store would encode again. ``merge_records``
(runner/audit/records.py) reads entries of these shapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runner.audit.chain import CanonicalJson, EntryKind, NewEntry
from runner.plan.model import canonical_json

if TYPE_CHECKING:  # only their fields are read: no gateway import at run time
    from runner.gateway.model import Outcome, StatementDecision

_json_text: Callable[[str], str] = json.encoder.encode_basestring


def statement_data(database: str, decision: StatementDecision) -> dict[str, Any]:
    """A statement entry's data. The principal is recorded once, in the chained
    session-created entry of the session; merge_records joins it into each record."""
    grant = decision.grant
    return {
        "database": database,
        "text": decision.text,
        "sha256": decision.sha256,
        "fingerprint": decision.fingerprint,
        "findings": [dict(f) for f in decision.findings],
        "decision": decision.decision.value,
        "reason": decision.reason,
        "grant": None
        if grant is None
        else {"id": grant.id, "approver": grant.approver, "evidence_url": grant.evidence_url},
        "masked_columns": [],
    }


def statement_data_json(database: str, decision: StatementDecision) -> CanonicalJson:
    """``canonical_json(statement_data(database, decision))``, assembled directly."""
    if decision.findings or decision.grant is not None:  # rarer: the general encoder
        return CanonicalJson(canonical_json(statement_data(database, decision)))
    reason = decision.reason
    return CanonicalJson(
        f'{{"database":{_json_text(database)},"decision":"{decision.decision.value}",'
        f'"findings":[],"fingerprint":"{decision.fingerprint}","grant":null,'
        f'"masked_columns":[],"reason":{"null" if reason is None else _json_text(reason)},'
        f'"sha256":"{decision.sha256}","text":{_json_text(decision.text)}}}'
    )


def outcome_data(outcome: Outcome) -> dict[str, Any]:
    data: dict[str, Any] = {
        "outcome": outcome.tag if outcome.sqlstate is None else outcome.sqlstate,
        "tag": outcome.tag,
        "sqlstate": outcome.sqlstate,
        "rows": outcome.rows,
        "duration_ms": round(float(outcome.duration_ms), 3),
        "status": outcome.status,
    }
    if outcome.masked:  # only when masking changed something: other entries stay as they were
        data["masked_columns"] = [dict(c) for c in outcome.masked]
    if outcome.nested:  # what the server-side guard saw inside a marked statement
        data["nested"] = [dict(n) for n in outcome.nested]
    return data


def _json_opt(value: str | None) -> str:
    return "null" if value is None else _json_text(value)


def outcome_data_json(outcome: Outcome) -> CanonicalJson:
    """``canonical_json(outcome_data(outcome))``, assembled directly: everything after
    the duration is the same for every run of a statement, so it is made once."""
    if outcome.masked or outcome.nested:
        return CanonicalJson(canonical_json(outcome_data(outcome)))
    tail = _outcome_tails.get((outcome.tag, outcome.rows, outcome.sqlstate, outcome.status))
    if tail is None:
        tail = _outcome_tail(outcome)
    return CanonicalJson(f'{{"duration_ms":{float(round(outcome.duration_ms, 3))!r},{tail}')


_outcome_tails: dict[tuple[str | None, int | None, str | None, str], str] = {}


def _outcome_tail(outcome: Outcome) -> str:
    tag, sqlstate, rows = outcome.tag, outcome.sqlstate, outcome.rows
    tag_text = _json_opt(tag)
    tail = (
        f'"outcome":{tag_text if sqlstate is None else _json_text(sqlstate)},'
        f'"rows":{"null" if rows is None else int(rows)},"sqlstate":{_json_opt(sqlstate)},'
        f'"status":{_json_text(outcome.status)},"tag":{tag_text}}}'
    )
    if len(_outcome_tails) < 4096:  # tags repeat ("SELECT 1"); row counts may not
        _outcome_tails[(tag, rows, sqlstate, outcome.status)] = tail
    return tail


_PREFIX_END = '","text":""}'


def statement_data_prefix(database: str, decision: StatementDecision) -> str:
    """``statement_data_json`` of ``decision`` up to the value of its sha256: the C lane
    (runner/_native/_lane.c) completes it with the sha256 and the text of each statement
    with the same literal mask (the keys are sorted: "sha256" and "text" come last)."""
    empty = statement_data_json(database, decision._replace(text="", sha256=""))
    if not empty.endswith(_PREFIX_END):
        raise ValueError("statement data does not end with its sha256 and text")
    return empty[: -len(_PREFIX_END)]


def statement_entry(session_id: str, database: str, decision: StatementDecision) -> NewEntry:
    """The entry written before a statement is forwarded (or refused)."""
    return NewEntry(EntryKind.STATEMENT, session_id, statement_data_json(database, decision))


def outcome_entry(session_id: str | None, statement_seq: int, outcome: Outcome) -> NewEntry:
    """The entry that completes statement entry ``statement_seq``."""
    return NewEntry(EntryKind.OUTCOME, session_id, outcome_data_json(outcome), ref=statement_seq)


def event_entry(session_id: str | None, event: str, **data: Any) -> NewEntry:
    """A session event: exchanged, refused, authenticated, auth failed, revoked, closed..."""
    return NewEntry(kind=EntryKind.SESSION, session_id=session_id, data={"event": event, **data})
