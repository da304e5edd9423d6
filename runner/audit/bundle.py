"""The audit bundle: one ``.tar.gz`` an auditor verifies alone, offline.

Files (DESIGN.md, "Audit bundle"), at the top level of the archive, nothing else:

* ``manifest.json``: the format, whether the bundle is signed (a dry-run's is not,
  and says why), the session and plan, and every other file with its sha256 and size;
* ``session.jsonl``: the session's audit-chain entries, one per line, canonical JSON;
* ``plan.json``: the plan as the gateway analysed it (or the runner's, unsigned);
* ``approvals.json``: the approval verdicts and grants the gateway recorded;
* ``identity.json``: the identity claims the gateway verified at the token exchange;
* ``attestation.dsse.json``: the gateway's signed in-toto statement over the files
  above (``runner.audit.attestation``); absent from the signature: the views;
* ``plan.md`` and ``report.html``: views for people, rendered from the files above.

The same inputs give the same bytes: members in name order, mtime/uid/gid fixed,
no user or group names, gzip without a name or timestamp. ``read_bundle`` refuses
anything but those regular files at the top level (no paths, links or devices),
duplicates and members over ``MAX_MEMBER_BYTES``.

At the end of a CI job, whatever happened (``runner.audit.storage`` then stores it)::

    envelope = GET /v1/sessions/{id}/attestation          # first: it fixes the range
    entries = GET /v1/sessions/{id}/audit -> "entries"    # chain entries, not records
    bundle = build_bundle(entries=entries, envelope=envelope, plan=plan.to_json(),
                          run={"repository": ..., "run_id": ..., "attempt": ...})

A job with no attestation (a dry-run, a refused exchange, an unreachable gateway)
passes ``envelope=None`` and ``unsigned_reason``: the bundle is written, unsigned.
"""

from __future__ import annotations

import base64
import gzip
import html
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import __version__
from runner.audit.attestation import (
    ATTESTED_FILES,
    SessionFiles,
    json_file,
    session_files,
    sha256_hex_bytes,
)
from runner.audit.chain import AuditEntry, EntryKind
from runner.audit.dsse import DsseError, envelope_bytes, parse_envelope

BUNDLE_FORMAT = "signoff-audit-bundle/1"
MANIFEST = "manifest.json"
ATTESTATION = "attestation.dsse.json"
VIEWS = ("plan.md", "report.html")
BUNDLE_FILES = (MANIFEST, *ATTESTED_FILES, ATTESTATION, *VIEWS)
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_BUNDLE_BYTES = 1024 * 1024 * 1024  # all members together, uncompressed
# 2000-01-01T00:00:00Z: a fixed mtime (0 makes some tar readers warn).
_FIXED_MTIME = 946684800
REPORT_PLACEHOLDER_MARK = "signoff-report-placeholder"

# report.py (another change) replaces the placeholder: it gets the bundle's other
# files by name and returns the page's bytes.
ReportRenderer = Callable[[Mapping[str, bytes]], bytes]


class BundleError(ValueError):
    """A bundle that cannot be read or built (one line naming the file)."""


@dataclass(frozen=True)
class Bundle:
    files: dict[str, bytes]  # name -> bytes, BUNDLE_FILES (attestation absent when unsigned)

    @property
    def manifest(self) -> dict[str, Any]:
        value = json.loads(self.files[MANIFEST])
        if not isinstance(value, dict):
            raise BundleError(f"{MANIFEST}: not a JSON object")
        return value

    @property
    def signed(self) -> bool:
        return ATTESTATION in self.files

    def to_bytes(self) -> bytes:
        return bundle_bytes(self.files)


# -- building -----------------------------------------------------------------------------


def entry_from_json(value: Mapping[str, Any]) -> AuditEntry:
    """An audit entry from its JSON (``AuditEntry.to_json()``, a ``session.jsonl`` line)."""
    if "data" not in value or "prev_hash" not in value:
        raise BundleError(
            "audit: these are merged audit records, not chain entries; pass the entries "
            '(the "entries" of GET /v1/sessions/{id}/audit), which verify'
        )
    data = value["data"]
    if not isinstance(data, dict):
        raise BundleError(f"audit entry {value.get('seq')}: data is not a JSON object")
    try:
        return AuditEntry(
            seq=int(value["seq"]),
            ts=str(value["ts"]),
            kind=EntryKind(value["kind"]),
            session_id=None if value.get("session_id") is None else str(value["session_id"]),
            data=data,
            prev_hash=str(value["prev_hash"]),
            hash=str(value["hash"]),
            ref=None if value.get("ref") is None else int(value["ref"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(f"audit entry {value.get('seq')}: {error}") from None


def _entries(values: Iterable[AuditEntry | Mapping[str, Any]]) -> list[AuditEntry]:
    return [v if isinstance(v, AuditEntry) else entry_from_json(v) for v in values]


def attested_statement(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The in-toto statement in ``envelope``, NOT verified (the builder only reads which
    entries it covers; ``runner.audit.offline`` verifies)."""
    try:
        value = parse_envelope(envelope)
        payload = base64.b64decode(value["payload"], validate=True)
        statement = json.loads(payload)
    except (DsseError, ValueError) as error:
        raise BundleError(f"{ATTESTATION}: {error}") from None
    if not isinstance(statement, dict):
        raise BundleError(f"{ATTESTATION}: the payload is not a JSON object")
    return statement


def build_bundle(
    *,
    entries: Iterable[AuditEntry | Mapping[str, Any]],
    envelope: Mapping[str, Any] | None,
    plan: Mapping[str, Any] | None = None,
    unsigned_reason: str | None = None,
    run: Mapping[str, Any] | None = None,
    render_report: ReportRenderer | None = None,
) -> Bundle:
    """The bundle of one session (or of a dry-run: ``envelope`` None, ``unsigned_reason``).

    ``entries``: the session's audit-chain entries (``AuditEntry`` or their JSON).
    With an envelope, only the entries it attests are written (a session may have
    recorded more since: its closing, say; the gateway keeps those). ``plan``: the
    runner's plan, written only when the gateway recorded none (dry-run, a session
    refused before its plan was submitted). ``run``: what the CI job says about
    itself (repository, run id, attempt...), kept in the manifest as unverified.
    """
    chain = _entries(entries)
    statement: dict[str, Any] | None = None
    if envelope is not None:
        try:
            statement = attested_statement(envelope)
        except BundleError:
            # Still written, whole: a failed run is evidence too, and verification
            # says what is wrong with the envelope.
            statement = None
        predicate = statement.get("predicate") if statement else None
        audit = predicate.get("audit") if isinstance(predicate, dict) else None
        first = audit.get("first_seq") if isinstance(audit, dict) else None
        last = audit.get("last_seq") if isinstance(audit, dict) else None
        if isinstance(first, int) and isinstance(last, int):
            chain = [e for e in chain if first <= e.seq <= last]
    elif not unsigned_reason:
        raise BundleError("an unsigned bundle must say why (unsigned_reason, e.g. 'dry-run')")
    evidence = session_files(chain)
    files = dict(evidence.files)
    plan_json = evidence.plan
    if plan_json is None and plan is not None:
        plan_json = dict(plan)
        files["plan.json"] = json_file(plan_json)
    files["plan.md"] = _plan_markdown(plan_json)
    if envelope is not None:
        files[ATTESTATION] = envelope_bytes(envelope)
    renderer = render_report or placeholder_report
    files["report.html"] = renderer(files)
    files[MANIFEST] = _manifest(
        evidence, plan_json, files, envelope is not None, unsigned_reason, run
    )
    return Bundle(files)


def _plan_markdown(plan_json: Mapping[str, Any] | None) -> bytes:
    if plan_json is None:
        return b"# No plan\n\nThe gateway recorded no plan for this session.\n"
    from runner.plan.model import Plan
    from runner.plan.render import markdown

    try:
        plan = Plan.from_json(plan_json)
    except (KeyError, TypeError, ValueError) as error:
        return f"# Plan not rendered\n\nplan.json does not load as a plan: {error}\n".encode()
    return markdown(plan).encode("utf-8")


def _manifest(
    evidence: SessionFiles,
    plan_json: Mapping[str, Any] | None,
    files: Mapping[str, bytes],
    signed: bool,
    unsigned_reason: str | None,
    run: Mapping[str, Any] | None,
) -> bytes:
    identity = evidence.identity or {}
    plan_hash = evidence.plan_hash or (plan_json or {}).get("hash")
    manifest = {
        "format": BUNDLE_FORMAT,
        "signed": signed,
        "unsigned_reason": None if signed else unsigned_reason,
        "session_id": evidence.session_id,
        "database": identity.get("database") or (plan_json or {}).get("target"),
        "plan_hash": plan_hash,
        "chain_head": None if evidence.head is None else evidence.head.hash,
        "attested_files": list(ATTESTED_FILES) if signed else [],
        "views": list(VIEWS),
        "run": dict(run) if run else None,
        "signoff_version": __version__,
        "files": [
            {"name": name, "sha256": sha256_hex_bytes(files[name]), "size": len(files[name])}
            for name in sorted(files)
            if name != MANIFEST
        ],
    }
    return json_file(manifest)


def placeholder_report(files: Mapping[str, bytes]) -> bytes:
    """PLACEHOLDER report.html (replaced by runner/audit/report.py, another change):
    a minimal self-contained page naming the session, its principal and the plan."""
    try:
        identity = json.loads(files.get("identity.json", b"null")) or {}
        plan = json.loads(files.get("plan.json", b"null")) or {}
    except ValueError:
        identity, plan = {}, {}
    principal = identity.get("principal") or {}
    rows = [
        ("session", identity.get("session_id")),
        ("database", identity.get("database") or plan.get("target")),
        ("principal", principal.get("sub")),
        ("actor", principal.get("actor")),
        ("plan hash", plan.get("hash")),
        ("signed", "yes" if ATTESTATION in files else "no (unsigned bundle)"),
    ]
    cells = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    page = f"""<!doctype html>
<!-- {REPORT_PLACEHOLDER_MARK}: replaced by the auditor's report (runner/audit/report.py) -->
<html lang="en"><head><meta charset="utf-8"><title>Signoff audit bundle (placeholder)</title>
</head><body>
<h1>Signoff audit bundle</h1>
<p><strong>Placeholder report.</strong> Verify this bundle with
<code>signoff audit verify BUNDLE --public-key GATEWAY.pub</code>; the evidence is in
session.jsonl, plan.json, approvals.json and identity.json.</p>
<table>
{cells}
</table>
</body></html>
"""
    return page.encode("utf-8")


# -- the archive ----------------------------------------------------------------------------


def bundle_bytes(files: Mapping[str, bytes]) -> bytes:
    """The ``.tar.gz`` of ``files``, deterministic (see the module doc)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = _FIXED_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_bundle(bundle: Bundle, path: Path) -> Path:
    """Write the bundle to ``path`` (a new file: an existing one is not replaced)."""
    data = bundle.to_bytes()
    try:
        with path.open("xb") as handle:
            handle.write(data)
    except FileExistsError:
        raise BundleError(f"{path} exists; a bundle is never overwritten") from None
    return path


def read_bundle(source: Path | bytes, *, what: str | None = None) -> Bundle:
    """A bundle from a file or its bytes, every member checked (see the module doc)."""
    name = what or (str(source) if isinstance(source, Path) else "bundle")
    try:
        data = source.read_bytes() if isinstance(source, Path) else source
    except OSError as error:
        raise BundleError(f"{name}: cannot read it ({error.strerror})") from None
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                _check_member(name, member, files)
                total += member.size
                if total > MAX_BUNDLE_BYTES:
                    raise BundleError(f"{name}: larger than {MAX_BUNDLE_BYTES} bytes unpacked")
                handle = archive.extractfile(member)
                if handle is None:
                    raise BundleError(f"{name}: {member.name} is not a regular file")
                content = handle.read(member.size + 1)
                if len(content) != member.size:
                    raise BundleError(f"{name}: {member.name} is truncated")
                files[member.name] = content
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as error:
        raise BundleError(f"{name}: not a readable .tar.gz ({error})") from None
    if MANIFEST not in files:
        raise BundleError(f"{name}: no {MANIFEST}; not a Signoff audit bundle")
    return Bundle(files)


def _check_member(name: str, member: tarfile.TarInfo, seen: Mapping[str, bytes]) -> None:
    member_name = member.name
    if "/" in member_name or "\\" in member_name or member_name in ("", ".", ".."):
        raise BundleError(f"{name}: member {member_name!r} is a path; refused (path traversal)")
    if not member.isfile():
        raise BundleError(f"{name}: member {member_name!r} is not a regular file; refused")
    if member_name not in BUNDLE_FILES:
        raise BundleError(f"{name}: member {member_name!r} is not a bundle file; refused")
    if member_name in seen:
        raise BundleError(f"{name}: member {member_name!r} appears twice; refused")
    if member.size > MAX_MEMBER_BYTES:
        raise BundleError(
            f"{name}: member {member_name!r} is {member.size} bytes, over {MAX_MEMBER_BYTES}"
        )


def session_entries(bundle: Bundle) -> list[AuditEntry]:
    """The entries of the bundle's ``session.jsonl`` (BundleError naming the line)."""
    entries: list[AuditEntry] = []
    try:
        text = bundle.files.get("session.jsonl", b"").decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError("session.jsonl: not UTF-8 text") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise BundleError(f"session.jsonl line {number}: not JSON") from None
        if not isinstance(value, dict):
            raise BundleError(f"session.jsonl line {number}: not a JSON object")
        entries.append(entry_from_json(value))
    return entries


__all__ = [
    "ATTESTATION",
    "BUNDLE_FILES",
    "MANIFEST",
    "Bundle",
    "BundleError",
    "build_bundle",
    "bundle_bytes",
    "entry_from_json",
    "placeholder_report",
    "read_bundle",
    "session_entries",
    "write_bundle",
]
