"""Verifying an audit bundle offline, with nothing but the gateway's public key.

``verify_bundle(path_or_s3_uri, public_key_pem)`` answers one line per check and a
verdict: the archive (members), the manifest (every file's sha256, naming the one
that differs), the signature (DSSE over the in-toto statement), the attested files
(each signed digest, naming the file), the hash chain (``runner.audit.verify``, and
its head, count and seqs against the signed statement), the plan (every statement
that reached the database is in the plan, by fingerprint), the approvals (every
statement that needed approval ran on a grant the gateway recorded, for this plan
and this fingerprint), and the identity (the claims the gateway verified). An
unsigned bundle (a dry-run's) never verifies: it says so.

Checking the signature with standard tools, without Signoff's code
-------------------------------------------------------------------
The signature is Ed25519 over the DSSE pre-authentication encoding (PAE)::

    PAE = "DSSEv1" SP len(payloadType) SP payloadType SP len(payload) SP payload

Unpack the bundle and rebuild the PAE with a shell, ``jq`` and ``base64``, then
let OpenSSL (3.0 or later) verify it with the gateway's public key::

    tar -xzf bundle.tar.gz
    jq -r .payload attestation.dsse.json | base64 -d > payload.json
    type=$(jq -j .payloadType attestation.dsse.json)
    printf 'DSSEv1 %d %s %d ' "${#type}" "$type" "$(wc -c < payload.json)" > pae.bin
    cat payload.json >> pae.bin
    jq -r '.signatures[0].sig' attestation.dsse.json | base64 -d > sig.bin
    openssl pkeyutl -verify -pubin -inkey gateway-ed25519.pem.pub -rawin \\
        -in pae.bin -sigfile sig.bin          # prints "Signature Verified Successfully"

Then compare the signed digests with the files (each line must say OK)::

    jq -r '.subject[] | select(.name | endswith(".json") or endswith(".jsonl"))
           | "\\(.digest.sha256)  \\(.name)"' payload.json | sha256sum -c -

(``${#type}`` counts characters; the payload type is ASCII, so they are bytes.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from runner.audit.attestation import (
    ATTESTED_FILES,
    CHAIN_HEAD_SUBJECT,
    PLAN_SUBJECT,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    sha256_hex_bytes,
)
from runner.audit.bundle import (
    ATTESTATION,
    BUNDLE_FILES,
    MANIFEST,
    Bundle,
    BundleError,
    read_bundle,
    session_entries,
)
from runner.audit.chain import AuditEntry, EntryKind
from runner.audit.dsse import (
    DsseError,
    key_id,
    load_public_key_pem,
    verify_envelope,
)
from runner.audit.readonly import is_housekeeping
from runner.audit.verify import verify_chain


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


@dataclass
class VerifyReport:
    source: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def verdict(self) -> str:
        if self.ok:
            return f"VERIFIED: {self.source}: all {len(self.checks)} checks passed"
        names = ", ".join(c.name for c in self.failed)
        return f"NOT VERIFIED: {self.source}: {len(self.failed)} check(s) failed ({names})"

    def lines(self) -> list[str]:
        return [c.line() for c in self.checks] + [self.verdict()]

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok


def verify_bundle(
    source: Path | str,
    public_key_pem: str | bytes,
    *,
    s3_endpoint_url: str | None = None,
) -> VerifyReport:
    """Verify the bundle at a path, ``file://`` or ``s3://bucket/key`` (see the module doc)."""
    report = VerifyReport(str(source))
    try:
        public_key = load_public_key_pem(public_key_pem)
    except DsseError as error:
        report.add("public key", False, str(error))
        return report
    try:
        bundle = read_bundle(_fetch(source, s3_endpoint_url), what=str(source))
    except (BundleError, OSError) as error:
        report.add("bundle", False, str(error))
        return report
    except Exception as error:  # StorageError and boto's: one line, no traceback
        report.add("bundle", False, f"{source}: {str(error).splitlines()[0]}")
        return report
    return verify_loaded(bundle, public_key_pem, report=report, _key=public_key)


def _fetch(source: Path | str, endpoint_url: str | None) -> bytes:
    text = str(source)
    if text.startswith("s3://"):
        from runner.audit.storage import StorageConfig, read_object

        return read_object(
            text, StorageConfig(require_object_lock=False, endpoint_url=endpoint_url)
        )
    path = Path(text[len("file://") :] if text.startswith("file://") else text)
    return path.read_bytes()


def verify_loaded(
    bundle: Bundle,
    public_key_pem: str | bytes,
    *,
    report: VerifyReport | None = None,
    _key: Any = None,
) -> VerifyReport:
    """The checks of ``verify_bundle`` on a bundle already read."""
    report = report or VerifyReport("bundle")
    public_key = _key or load_public_key_pem(public_key_pem)
    missing = [n for n in BUNDLE_FILES if n not in bundle.files and n != ATTESTATION]
    report.add(
        "bundle",
        not missing,
        f"missing {', '.join(missing)}" if missing else f"{len(bundle.files)} files",
    )
    manifest = _check_manifest(bundle, report)
    statement = _check_signature(bundle, manifest, public_key, report)
    _check_attested(bundle, statement, report)
    try:
        entries = session_entries(bundle)
    except BundleError as error:
        report.add("chain", False, str(error))
        entries = []
    else:
        _check_chain(entries, statement, report)
    plan = _json_file(bundle, "plan.json")
    _check_plan(entries, plan, report)
    _check_approvals(entries, plan, report)
    _check_identity(bundle, entries, report)
    return report


def _json_file(bundle: Bundle, name: str) -> Any:
    try:
        return json.loads(bundle.files.get(name, b"null"))
    except ValueError:
        return None


def _check_manifest(bundle: Bundle, report: VerifyReport) -> dict[str, Any]:
    manifest = _json_file(bundle, MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        report.add("manifest", False, f"{MANIFEST} is not a bundle manifest")
        return {}
    listed = {str(f.get("name")): f for f in manifest["files"] if isinstance(f, Mapping)}
    problems: list[str] = []
    for name in sorted(set(bundle.files) - {MANIFEST}):
        entry = listed.get(name)
        if entry is None:
            problems.append(f"{name} is not in the manifest")
        elif entry.get("sha256") != sha256_hex_bytes(bundle.files[name]):
            problems.append(f"{name}: sha256 differs from the manifest")
    problems += [
        f"{name}: in the manifest, not in the bundle"
        for name in sorted(set(listed) - set(bundle.files))
    ]
    report.add(
        "manifest",
        not problems,
        f"{MANIFEST}: " + "; ".join(problems) if problems else f"{len(listed)} file digests match",
    )
    return manifest


def _check_signature(
    bundle: Bundle, manifest: Mapping[str, Any], public_key: Any, report: VerifyReport
) -> dict[str, Any] | None:
    envelope = bundle.files.get(ATTESTATION)
    if envelope is None:
        why = manifest.get("unsigned_reason") or "no attestation.dsse.json"
        report.add("signature", False, f"unsigned bundle ({why}): not evidence of a session")
        return None
    try:
        payload = verify_envelope(envelope, public_key)
    except DsseError as error:
        report.add("signature", False, f"{ATTESTATION}: {error}")
        return None
    try:
        statement = json.loads(payload)
    except ValueError:
        report.add("signature", False, f"{ATTESTATION}: the signed payload is not JSON")
        return None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        report.add("signature", False, f"{ATTESTATION}: not an in-toto Statement v1")
        return None
    if statement.get("predicateType") != PREDICATE_TYPE:
        report.add(
            "signature",
            False,
            f"{ATTESTATION}: predicateType {statement.get('predicateType')!r} "
            f"is not {PREDICATE_TYPE}",
        )
        return None
    report.add("signature", True, f"Ed25519 by key {key_id(public_key)[:16]}… (DSSE, in-toto)")
    return statement


def _subjects(statement: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for subject in statement.get("subject") or []:
        if isinstance(subject, Mapping) and isinstance(subject.get("digest"), Mapping):
            out[str(subject.get("name"))] = str(subject["digest"].get("sha256"))
    return out


def _check_attested(
    bundle: Bundle, statement: Mapping[str, Any] | None, report: VerifyReport
) -> None:
    if statement is None:
        report.add("attested files", False, "no verified attestation to compare the files with")
        return
    subjects = _subjects(statement)
    problems = []
    for name in ATTESTED_FILES:
        if name not in subjects:
            problems.append(f"{name} is not attested")
        elif name not in bundle.files:
            problems.append(f"{name} is missing")
        elif sha256_hex_bytes(bundle.files[name]) != subjects[name]:
            problems.append(f"{name} differs from what the gateway signed")
    plan = _json_file(bundle, "plan.json")
    plan_hash = plan.get("hash") if isinstance(plan, Mapping) else None
    if subjects.get(PLAN_SUBJECT) != plan_hash:
        problems.append("plan.json is not the plan the gateway signed")
    report.add(
        "attested files",
        not problems,
        "; ".join(problems) if problems else ", ".join(ATTESTED_FILES) + " as signed",
    )


def _runs(entries: Sequence[AuditEntry]) -> list[list[AuditEntry]]:
    """Runs of consecutive seqs: a session's entries are interleaved with other
    sessions' in the gateway's one chain; each run links entry to entry."""
    runs: list[list[AuditEntry]] = []
    for entry in entries:
        if runs and entry.seq == runs[-1][-1].seq + 1:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


def _foreign_entry(entries: Sequence[AuditEntry]) -> str | None:
    """An entry of another session, or an outcome of a statement not in the bundle."""
    session_id = entries[0].session_id
    statements = {e.seq for e in entries if e.kind is EntryKind.STATEMENT}
    for entry in entries:
        if entry.session_id != session_id:
            return f"entry {entry.seq} is of session {entry.session_id}, not {session_id}"
        if entry.kind is EntryKind.OUTCOME and entry.ref not in statements:
            return f"entry {entry.seq}: outcome of entry {entry.ref}, not a statement here"
    return None


def _check_chain(
    entries: Sequence[AuditEntry], statement: Mapping[str, Any] | None, report: VerifyReport
) -> None:
    if not entries:
        report.add("chain", False, "session.jsonl holds no entries")
        return
    for previous, entry in pairwise(entries):
        if entry.seq <= previous.seq:
            report.add(
                "chain",
                False,
                f"session.jsonl: entry {entry.seq} out of order (after {previous.seq})",
            )
            return
    problem = _foreign_entry(entries)
    if problem is not None:
        report.add("chain", False, f"session.jsonl: {problem}")
        return
    for run in _runs(entries):
        first = run[0]
        # Each run follows an entry outside the bundle (or the genesis): its first
        # prev_hash is taken as given, then every hash and link is checked.
        result = verify_chain(run, after=(first.seq - 1, first.prev_hash))
        if not result.ok:
            report.add("chain", False, f"session.jsonl: {result.problem}")
            return
    head = entries[-1]
    if statement is None:
        report.add("chain", False, f"{len(entries)} entries link, but no signed head to end at")
        return
    audit = statement.get("predicate", {}).get("audit", {})
    signed_head = _subjects(statement).get(CHAIN_HEAD_SUBJECT)
    seqs = sha256_hex_bytes(",".join(str(e.seq) for e in entries).encode("ascii"))
    problems = []
    if signed_head != head.hash:
        problems.append(f"the last entry ({head.seq}) is not the signed chain head")
    if audit.get("entries") != len(entries):
        problems.append(f"{len(entries)} entries, the gateway signed {audit.get('entries')}")
    if audit.get("seqs_sha256") != seqs:
        problems.append("the entries' seqs are not the ones the gateway signed")
    report.add(
        "chain",
        not problems,
        "session.jsonl: " + "; ".join(problems)
        if problems
        else f"{len(entries)} entries, seq {entries[0].seq}..{head.seq}, head {head.hash[:12]}",
    )


def _executed(entries: Sequence[AuditEntry]) -> list[AuditEntry]:
    """Statement entries the gateway let through (allowed, approved): what reached the
    database, whatever came back."""
    return [
        e for e in entries if e.kind is EntryKind.STATEMENT and e.data.get("decision") != "blocked"
    ]


def _plan_statements(plan: Any) -> list[Mapping[str, Any]]:
    if not isinstance(plan, Mapping) or not isinstance(plan.get("statements"), list):
        return []
    return [s for s in plan["statements"] if isinstance(s, Mapping)]


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 60 else line[:57] + "..."


def _check_plan(entries: Sequence[AuditEntry], plan: Any, report: VerifyReport) -> None:
    """Every statement that reached the database is a statement of the plan, by
    fingerprint, or housekeeping (runner.audit.readonly: the runner's session
    settings, catalog reads and apply lock, which change nothing)."""
    executed = _executed(entries)
    planned = {str(s.get("fingerprint")) for s in _plan_statements(plan)}
    outside = [e for e in executed if e.data.get("fingerprint") not in planned]
    housekeeping = [e for e in outside if is_housekeeping(str(e.data.get("text", "")))]
    foreign = [e for e in outside if e not in housekeeping]
    aside = (
        f"; {len(housekeeping)} housekeeping statement(s) outside it (settings, catalog reads)"
        if housekeeping
        else ""
    )
    if not isinstance(plan, Mapping):
        report.add(
            "plan",
            not foreign,
            f"no plan, and {len(foreign)} statement(s) that are not housekeeping ran"
            if foreign
            else f"no plan, and nothing but housekeeping ran{aside}",
        )
        return
    short = str(plan.get("hash"))[:12]
    in_plan = len(executed) - len(outside)
    report.add(
        "plan",
        not foreign,
        f"{len(foreign)} executed statement(s) not in plan {short}: "
        + "; ".join(f"entry {e.seq} {_short(str(e.data.get('text', '')))!r}" for e in foreign[:5])
        if foreign
        else f"{in_plan} executed statement(s), all in plan {short}{aside}",
    )


def _check_approvals(entries: Sequence[AuditEntry], plan: Any, report: VerifyReport) -> None:
    grants = {str(e.data.get("grant")): e.data for e in entries if e.kind is EntryKind.GRANT}
    plan_hash = plan.get("hash") if isinstance(plan, Mapping) else None
    needing = {str(s.get("fingerprint")) for s in _plan_statements(plan) if s.get("needs_approval")}
    problems: list[str] = []
    covered = 0
    for entry in _executed(entries):
        fingerprint = entry.data.get("fingerprint")
        approved = entry.data.get("decision") == "approved"
        if not approved and fingerprint not in needing:
            continue
        if not approved:
            problems.append(f"entry {entry.seq} needed approval and ran without a grant")
            continue
        grant = entry.data.get("grant")
        grant_id = str(grant.get("id")) if isinstance(grant, Mapping) else None
        recorded = grants.get(grant_id or "")
        if recorded is None:
            problems.append(f"entry {entry.seq}: grant {grant_id} is not recorded in the session")
        elif recorded.get("fingerprint") != fingerprint:
            problems.append(f"entry {entry.seq}: grant {grant_id} is for another statement")
        elif plan_hash is not None and recorded.get("plan_hash") not in (None, plan_hash):
            problems.append(f"entry {entry.seq}: grant {grant_id} is for another plan")
        elif not recorded.get("approver"):
            problems.append(f"entry {entry.seq}: grant {grant_id} names no approver")
        else:
            covered += 1
    report.add(
        "approvals",
        not problems,
        "; ".join(problems[:10])
        if problems
        else (
            f"{covered} statement(s) ran on verified grants"
            if covered
            else "no executed statement needed approval"
        ),
    )


def _check_identity(bundle: Bundle, entries: Sequence[AuditEntry], report: VerifyReport) -> None:
    identity = _json_file(bundle, "identity.json")
    principal = identity.get("principal") if isinstance(identity, Mapping) else None
    if not isinstance(principal, Mapping) or not principal.get("iss") or not principal.get("sub"):
        report.add("identity", False, "identity.json names no verified principal (iss, sub)")
        return
    created = [
        e
        for e in entries
        if e.kind is EntryKind.SESSION and e.data.get("event") == "session-created"
    ]
    if not created or created[0].data.get("principal") != principal:
        report.add("identity", False, "identity.json is not the session-created entry's principal")
        return
    who = principal.get("actor") or principal.get("sub")
    report.add("identity", True, f"{who} ({principal.get('sub')}) via {principal.get('iss')}")


__all__ = ["Check", "VerifyReport", "verify_bundle", "verify_loaded"]
