"""The audit bundle from a real gateway session: the attestation's statement, the
bundle's files and determinism, unsigned dry-run bundles, hostile archives."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_session import APPROVER, RecordedSession, record_session
from ci_flow_harness import Flow, ci_flow

from runner.audit.attestation import PREDICATE_TYPE, STATEMENT_TYPE, sha256_hex_bytes
from runner.audit.bundle import (
    BUNDLE_FILES,
    REPORT_PLACEHOLDER_MARK,
    BundleError,
    build_bundle,
    bundle_bytes,
    read_bundle,
    session_entries,
    write_bundle,
)
from runner.audit.chain import EntryKind
from runner.audit.dsse import verify_envelope
from runner.plan.build import SqlSource, build_plan
from runner.plan.policy import Policy


@pytest.fixture
def flow(scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flow]:
    with ci_flow(scratch_db_url, tmp_path, monkeypatch) as running:
        yield running


@pytest.fixture
def recorded(flow: Flow) -> RecordedSession:
    return record_session(flow)


def test_attestation_is_an_in_toto_statement_of_the_session(recorded: RecordedSession) -> None:
    payload = verify_envelope(recorded.envelope, recorded.key.public_key())
    statement = json.loads(payload)
    assert statement["_type"] == STATEMENT_TYPE
    assert statement["predicateType"] == PREDICATE_TYPE
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects["plan"] == recorded.plan.hash
    attested = [e for e in recorded.entries if e.seq <= statement["predicate"]["audit"]["last_seq"]]
    assert subjects["audit-chain-head"] == attested[-1].hash
    predicate = statement["predicate"]
    assert predicate["session_id"] == recorded.session_id
    assert predicate["database"] == "ehr"
    assert predicate["plan_hash"] == recorded.plan.hash
    assert predicate["identity"]["principal"]["repository"] == "acme/ehr-api"
    assert predicate["identity"]["claims"]["sub"] == predicate["identity"]["principal"]["sub"]
    (grant,) = predicate["grants"]
    assert grant["approver"] == APPROVER
    assert grant["evidence_url"].startswith("http") and "/pull/7" in grant["evidence_url"]
    (approval,) = predicate["approvals"]
    assert approval["event"] == "plan-approved"
    assert [a["login"] for a in approval["approvers"]] == [APPROVER]
    assert predicate["outcome"]["result"] == "completed"
    assert predicate["outcome"]["statements"] == 3 and predicate["outcome"]["completed"] == 3
    assert predicate["masking_policy_digest"] is None
    assert predicate["timestamps"]["session_created"] <= predicate["timestamps"]["first_statement"]


def test_bundle_files_match_what_the_gateway_signed(
    recorded: RecordedSession, tmp_path: Path
) -> None:
    bundle = build_bundle(
        entries=[e.to_json() for e in recorded.entries],
        envelope=recorded.envelope,
        run={"repository": "acme/ehr-api", "run_id": "42", "attempt": 1},
    )
    assert set(bundle.files) == set(BUNDLE_FILES)
    path = write_bundle(bundle, tmp_path / "b.tar.gz")
    back = read_bundle(path)
    assert back.files == bundle.files
    statement = json.loads(base64.b64decode(recorded.envelope["payload"]))
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    for name in ("session.jsonl", "plan.json", "approvals.json", "identity.json"):
        assert sha256_hex_bytes(back.files[name]) == subjects[name], name
    manifest = back.manifest
    assert manifest["signed"] is True and manifest["unsigned_reason"] is None
    assert manifest["plan_hash"] == recorded.plan.hash
    listed = {f["name"]: f["sha256"] for f in manifest["files"]}
    assert set(listed) == set(BUNDLE_FILES) - {"manifest.json"}
    assert all(sha256_hex_bytes(back.files[n]) == d for n, d in listed.items())
    # session.jsonl holds the chain entries; the drop ran on the grant.
    entries = session_entries(back)
    statements = [e for e in entries if e.kind is EntryKind.STATEMENT]
    assert [e.data["text"] for e in statements] == [s.text for s in recorded.plan.statements]
    drop = statements[-1]
    assert drop.data["decision"] == "approved"
    assert drop.data["grant"]["approver"] == APPROVER
    approvals = json.loads(back.files["approvals.json"])
    assert approvals["grants"][0]["fingerprint"] == drop.data["fingerprint"]
    assert recorded.plan.short_hash in back.files["plan.md"].decode()
    assert REPORT_PLACEHOLDER_MARK in back.files["report.html"].decode()
    assert APPROVER not in back.files["identity.json"].decode()
    # Only what was attested: entries recorded after the attestation are left out.
    assert entries[-1].hash == subjects["audit-chain-head"]


def test_same_inputs_give_the_same_bytes(recorded: RecordedSession) -> None:
    entries = [e.to_json() for e in recorded.entries]
    one = build_bundle(entries=entries, envelope=recorded.envelope).to_bytes()
    two = build_bundle(entries=list(reversed(entries)), envelope=recorded.envelope).to_bytes()
    assert one == two
    with tarfile.open(fileobj=io.BytesIO(one), mode="r:gz") as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == sorted(BUNDLE_FILES)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (946684800, 0, 0, "", "", 0o644)
    }
    assert one[4:8] == b"\0\0\0\0"  # gzip header mtime


def test_merged_records_are_refused_with_the_fix(recorded: RecordedSession) -> None:
    from runner.audit.records import merge_records

    with pytest.raises(BundleError, match="merged audit records, not chain entries"):
        build_bundle(entries=merge_records(recorded.entries), envelope=recorded.envelope)


def test_dry_run_bundle_is_unsigned_and_says_so(tmp_path: Path) -> None:
    plan = build_plan([SqlSource("x.sql", "DROP TABLE t;")], policy=Policy(target="ehr"))
    bundle = build_bundle(entries=[], envelope=None, plan=plan.to_json(), unsigned_reason="dry-run")
    assert "attestation.dsse.json" not in bundle.files
    manifest = bundle.manifest
    assert manifest["signed"] is False and manifest["unsigned_reason"] == "dry-run"
    assert manifest["plan_hash"] == plan.hash
    assert json.loads(bundle.files["plan.json"])["hash"] == plan.hash
    assert read_bundle(bundle.to_bytes()).files == bundle.files
    with pytest.raises(BundleError, match="must say why"):
        build_bundle(entries=[], envelope=None, plan=plan.to_json())
    path = write_bundle(bundle, tmp_path / "dry.tar.gz")
    with pytest.raises(BundleError, match="never overwritten"):
        write_bundle(bundle, path)


def _archive(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return raw.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    return info


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([(_member("../manifest.json"), b"{}")], "path traversal"),
        ([(_member("/etc/manifest.json"), b"{}")], "path traversal"),
        ([(_member("sub/plan.json"), b"{}")], "path traversal"),
        ([(_member("plan.json", tarfile.SYMTYPE), b"")], "not a regular file"),
        ([(_member("evil.sh"), b"#!/bin/sh")], "not a bundle file"),
        ([(_member("plan.json"), b"{}"), (_member("plan.json"), b"{}")], "appears twice"),
        ([(_member("plan.json"), b"{}")], "no manifest.json"),
    ],
)
def test_hostile_archives_are_refused(
    members: list[tuple[tarfile.TarInfo, bytes]], message: str
) -> None:
    with pytest.raises(BundleError, match=message):
        read_bundle(_archive(members))


def test_oversize_member_is_refused_before_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import runner.audit.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "MAX_MEMBER_BYTES", 1000)
    data = bundle_bytes({"manifest.json": b"{}", "session.jsonl": b"x" * 1001})
    with pytest.raises(BundleError, match=r"session.jsonl' is 1001 bytes, over 1000"):
        read_bundle(data)


def test_not_a_tarball_is_one_line() -> None:
    with pytest.raises(BundleError, match=r"not a readable \.tar\.gz"):
        read_bundle(b"hello", what="x.tar.gz")


def test_a_broken_envelope_is_still_written_whole(recorded: RecordedSession) -> None:
    """A failed run is evidence too: the bundle keeps what the gateway answered and
    every entry; verification is where it fails."""
    broken = {**recorded.envelope, "payload": "!!not base64!!"}
    bundle = build_bundle(entries=recorded.entries, envelope=broken)
    assert json.loads(bundle.files["attestation.dsse.json"]) == broken
    assert len(session_entries(bundle)) == len(recorded.entries)
    assert bundle.manifest["signed"] is True
