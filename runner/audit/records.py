"""The audit-record view of DESIGN.md: one record per statement, its outcome merged
in, the session's principal joined in, plus session and grant events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.audit.chain import AuditEntry, EntryKind


def merge_records(entries: Iterable[AuditEntry]) -> list[dict[str, Any]]:
    """One record per statement entry with its outcome merged in, plus session events.

    Statement records carry the statement entry's data (principal, database,
    text, sha256, fingerprint, findings, decision, grant...) and ``outcome``
    (command tag or SQLSTATE), ``rows``, ``duration_ms``, ``masked_columns`` and
    ``status``: the outcome's status ("completed", "failed", "not-run",
    "connection-lost"), or "incomplete" when no outcome entry was written.
    ``seq``/``ts``/``prev_hash``/``hash`` are the statement entry's;
    ``outcome_seq``/``outcome_hash`` the outcome entry's. Session and grant
    entries are records of their own; records come in seq order.
    """
    ordered = sorted(entries, key=lambda e: e.seq)
    outcomes: dict[int, AuditEntry] = {}
    for entry in ordered:
        if entry.kind is EntryKind.OUTCOME and entry.ref is not None:
            outcomes.setdefault(entry.ref, entry)
    statement_seqs = {e.seq for e in ordered if e.kind is EntryKind.STATEMENT}
    # The gateway records a session's principal once, in its chained
    # session-created entry; every statement record of the session shows it.
    principals: dict[str, Any] = {}
    for entry in ordered:
        if entry.kind is EntryKind.SESSION and entry.session_id and "principal" in entry.data:
            principals.setdefault(entry.session_id, entry.data["principal"])

    records: list[dict[str, Any]] = []
    for entry in ordered:
        if entry.kind is EntryKind.STATEMENT:
            record = _statement_record(entry, outcomes.get(entry.seq))
            if "principal" not in record and entry.session_id in principals:
                record["principal"] = principals[entry.session_id]
            records.append(record)
        elif entry.kind is EntryKind.OUTCOME:
            if entry.ref in statement_seqs:
                continue  # merged into its statement's record
            records.append(_plain_record(entry))  # its statement is outside this view
        else:
            records.append(_plain_record(entry))
    return records


def _statement_record(entry: AuditEntry, outcome: AuditEntry | None) -> dict[str, Any]:
    record: dict[str, Any] = dict(entry.data)
    record.update(seq=entry.seq, ts=entry.ts, kind=entry.kind.value, session_id=entry.session_id)
    if outcome is None:
        record.update(
            outcome=None,
            rows=None,
            duration_ms=None,
            masked_columns=[],
            nested=[],
            status="incomplete",
            outcome_seq=None,
            outcome_hash=None,
        )
    else:
        data = outcome.data
        tag, sqlstate = data.get("tag"), data.get("sqlstate")
        result = data.get("outcome", tag if tag is not None else sqlstate)
        status = data.get("status") or ("failed" if sqlstate else "completed")
        record.update(
            outcome=result,
            rows=data.get("rows"),
            duration_ms=data.get("duration_ms"),
            masked_columns=list(data.get("masked_columns") or []),
            nested=list(data.get("nested") or []),
            status=status,
            outcome_seq=outcome.seq,
            outcome_hash=outcome.hash,
        )
    record.update(prev_hash=entry.prev_hash, hash=entry.hash)
    return record


def _plain_record(entry: AuditEntry) -> dict[str, Any]:
    record: dict[str, Any] = dict(entry.data)
    record.update(seq=entry.seq, ts=entry.ts, kind=entry.kind.value, session_id=entry.session_id)
    if entry.ref is not None:
        record["ref"] = entry.ref
    record.update(prev_hash=entry.prev_hash, hash=entry.hash)
    return record
