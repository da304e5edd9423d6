"""The gateway's attestation of a session: an in-toto Statement v1 in a DSSE envelope.

The statement (``_type`` https://in-toto.io/Statement/v1) names as subjects:

* ``audit-chain-head``: the hash of the session's last audit entry (a sha256);
* ``plan``: the plan hash of the plan the session submitted (a sha256 by DESIGN.md);
* the bundle files the gateway can make itself, byte for byte, from its own audit
  chain: ``session.jsonl``, ``plan.json``, ``approvals.json``, ``identity.json``
  (``session_files`` makes them; ``runner.audit.bundle`` writes the same bytes).

``plan.md`` and ``report.html`` are views the runner renders from those files: the
bundle's manifest covers them, the signature does not (a renderer of another
version would make other bytes; the evidence is the signed files).

The predicate (``predicateType`` ``PREDICATE_TYPE``) holds what the gateway
verified: the session and its identity claims, the database, the plan hash, the
grants with their approvers and evidence URLs, the outcome of the statements, the
masking policy digest (null until masking exists) and timestamps.

Everything is read from the session's audit entries (``runner.audit.chain``), so
an auditor recomputes the same files from ``session.jsonl`` alone. The runner is
untrusted: nothing it says goes into the statement.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runner.audit.chain import AuditEntry, EntryKind, canonical_text, rfc3339
from runner.audit.dsse import (
    PAYLOAD_TYPE,
    load_private_key_file,
    public_key_pem,
    sign_envelope,
)

if TYPE_CHECKING:
    from runner.gateway.model import StateStore

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://signoff.dev/attestation/session/v1"
CHAIN_HEAD_SUBJECT = "audit-chain-head"
PLAN_SUBJECT = "plan"
# The bundle files the gateway attests (the others are views of these).
ATTESTED_FILES = ("session.jsonl", "plan.json", "approvals.json", "identity.json")

__all__ = [
    "ATTESTED_FILES",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "SessionFiles",
    "attestation_statement",
    "gateway_attestation",
    "load_signing_key",
    "public_key_pem",
    "session_files",
    "sha256_hex_bytes",
]


def sha256_hex_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_signing_key(path: Path | str) -> Ed25519PrivateKey:
    """The gateway's Ed25519 signing key (``gateway.signing_key``); DsseError, one line."""
    return load_private_key_file(Path(path))


def json_file(value: Any) -> bytes:
    """A bundle JSON file: sorted keys, two-space indent, UTF-8, newline-terminated."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def entries_jsonl(entries: Iterable[AuditEntry]) -> bytes:
    """``session.jsonl``: one entry per line as canonical JSON (body and hash), seq order."""
    ordered = sorted(entries, key=lambda e: e.seq)
    return "".join(canonical_text(e.to_json()) + "\n" for e in ordered).encode("utf-8")


@dataclass(frozen=True)
class SessionFiles:
    """What the gateway's audit entries of one session say, and the bundle files made
    from them (bytes, deterministic: the gateway and the bundle writer agree)."""

    session_id: str | None
    entries: tuple[AuditEntry, ...]
    identity: dict[str, Any] | None  # the session-created event: principal, claims, ...
    plan: dict[str, Any] | None  # the plan as the gateway analysed it (plan-submitted)
    plan_hash: str | None
    approvals: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def head(self) -> AuditEntry | None:
        return self.entries[-1] if self.entries else None


def _events(entries: Sequence[AuditEntry], *names: str) -> list[AuditEntry]:
    return [e for e in entries if e.kind is EntryKind.SESSION and e.data.get("event") in names]


def session_files(entries: Iterable[AuditEntry]) -> SessionFiles:
    """The session's evidence from its audit entries (one session's, any order)."""
    ordered = tuple(sorted(entries, key=lambda e: e.seq))
    session_ids = {e.session_id for e in ordered if e.session_id is not None}
    if len(session_ids) > 1:
        raise ValueError(f"audit entries of {len(session_ids)} sessions; expected one")
    session_id = next(iter(session_ids), None)
    created = _events(ordered, "session-created")
    identity: dict[str, Any] | None = None
    if created:
        data = created[0].data
        identity = {
            "session_id": session_id,
            "verified_by": "signoff gateway (OIDC token validated at exchange)",
            "principal": data.get("principal"),
            "claims": data.get("claims"),
            "database": data.get("database"),
            "role": data.get("role"),
            "created_at": created[0].ts,
            "expires_at": data.get("expires_at"),
            "entry": {"seq": created[0].seq, "hash": created[0].hash},
        }
    submitted = _events(ordered, "plan-submitted")
    plan: dict[str, Any] | None = None
    plan_hash: str | None = None
    if submitted:  # the last plan submitted is the one the session ran
        last = submitted[-1].data
        plan_value = last.get("plan")
        plan = dict(plan_value) if isinstance(plan_value, Mapping) else None
        plan_hash = str(last.get("plan_hash")) if last.get("plan_hash") else None
    approvals = _approvals(ordered, plan_hash)
    files = {
        "session.jsonl": entries_jsonl(ordered),
        "identity.json": json_file(identity),
        "approvals.json": json_file(approvals),
        "plan.json": json_file(plan),
    }
    return SessionFiles(session_id, ordered, identity, plan, plan_hash, approvals, files)


def _approvals(entries: Sequence[AuditEntry], plan_hash: str | None) -> dict[str, Any]:
    """``approvals.json``: the approval verdicts the gateway recorded and the grants it
    made for this session (each with its approver and evidence URL)."""
    verdicts = [
        {
            "event": e.data.get("event"),
            "seq": e.seq,
            "ts": e.ts,
            "plan_hash": e.data.get("plan_hash"),
            "review": e.data.get("review"),
            "approvers": e.data.get("approvers", []),
            "rejected_by": e.data.get("rejected_by", []),
            "reason": e.data.get("reason"),
            "grants": e.data.get("grants", []),
        }
        for e in _events(entries, "plan-approved", "plan-rejected")
    ]
    grants = [
        {
            "id": e.data.get("grant"),
            "seq": e.seq,
            "ts": e.ts,
            "database": e.data.get("database"),
            "fingerprint": e.data.get("fingerprint"),
            "approver": e.data.get("approver"),
            "evidence_url": e.data.get("evidence_url"),
            "plan_hash": e.data.get("plan_hash"),
        }
        for e in entries
        if e.kind is EntryKind.GRANT
    ]
    return {"plan_hash": plan_hash, "verdicts": verdicts, "grants": grants}


def _outcome(entries: Sequence[AuditEntry]) -> dict[str, Any]:
    outcomes = {e.ref: e for e in entries if e.kind is EntryKind.OUTCOME}
    counts = {"statements": 0, "completed": 0, "failed": 0, "blocked": 0, "incomplete": 0}
    for entry in entries:
        if entry.kind is not EntryKind.STATEMENT:
            continue
        counts["statements"] += 1
        outcome = outcomes.get(entry.seq)
        if entry.data.get("decision") == "blocked":
            counts["blocked"] += 1
        elif outcome is None:
            counts["incomplete"] += 1
        elif outcome.data.get("sqlstate") or outcome.data.get("status") not in (None, "completed"):
            counts["failed"] += 1
        else:
            counts["completed"] += 1
    if counts["failed"]:
        result = "failed"
    elif counts["blocked"]:
        result = "refused"
    elif counts["incomplete"]:
        result = "incomplete"
    elif counts["statements"]:
        result = "completed"
    else:
        result = "no-statements"
    revoked = bool(_events(entries, "session-revoked"))
    return {"result": result, **counts, "session_revoked": revoked}


def _masking_digest(entries: Sequence[AuditEntry]) -> str | None:
    created = _events(entries, "session-created")
    value = created[0].data.get("masking_policy_digest") if created else None
    return value if isinstance(value, str) else None


def attestation_statement(
    files: SessionFiles, *, attested_at: datetime | None = None
) -> dict[str, Any]:
    """The in-toto Statement v1 over ``files`` (see the module doc)."""
    head = files.head
    if head is None:
        raise ValueError("no audit entries: nothing to attest")
    subjects: list[dict[str, Any]] = [
        {"name": CHAIN_HEAD_SUBJECT, "digest": {"sha256": head.hash}},
    ]
    if files.plan_hash is not None:
        subjects.append({"name": PLAN_SUBJECT, "digest": {"sha256": files.plan_hash}})
    for name in ATTESTED_FILES:
        subjects.append({"name": name, "digest": {"sha256": sha256_hex_bytes(files.files[name])}})
    statements = [e for e in files.entries if e.kind is EntryKind.STATEMENT]
    identity = files.identity or {}
    predicate = {
        "session_id": files.session_id,
        "identity": {
            "principal": identity.get("principal"),
            "claims": identity.get("claims"),
            "role": identity.get("role"),
        },
        "database": identity.get("database"),
        "plan_hash": files.plan_hash,
        "grants": files.approvals["grants"],
        "approvals": [
            {"event": v["event"], "approvers": v["approvers"], "rejected_by": v["rejected_by"]}
            for v in files.approvals["verdicts"]
        ],
        "outcome": _outcome(files.entries),
        # The masking policy in force, as session-created recorded it (null: none).
        "masking_policy_digest": _masking_digest(files.entries),
        "audit": {
            "first_seq": files.entries[0].seq,
            "last_seq": head.seq,
            "head_hash": head.hash,
            "entries": len(files.entries),
            "seqs_sha256": sha256_hex_bytes(
                ",".join(str(e.seq) for e in files.entries).encode("ascii")
            ),
        },
        "timestamps": {
            "session_created": identity.get("created_at"),
            "first_statement": statements[0].ts if statements else None,
            "last_entry": head.ts,
            "attested_at": rfc3339(attested_at or datetime.now(UTC)),
        },
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def statement_payload(statement: Mapping[str, Any]) -> bytes:
    """The DSSE payload: the statement as canonical JSON (UTF-8)."""
    return canonical_text(dict(statement)).encode("utf-8")


def sign_statement(statement: Mapping[str, Any], signing_key: Ed25519PrivateKey) -> dict[str, Any]:
    return sign_envelope(statement_payload(statement), signing_key, payload_type=PAYLOAD_TYPE)


def gateway_attestation(
    store: StateStore, session_id: str, signing_key: Ed25519PrivateKey
) -> dict[str, Any]:
    """The DSSE envelope the gateway answers ``GET /v1/sessions/{id}/attestation`` with:
    the session's audit entries as the store holds them now, attested and signed.
    ValueError when the session has no entries (nothing to attest)."""
    entries = store.entries(session_id=session_id)
    return sign_statement(attestation_statement(session_files(entries)), signing_key)
