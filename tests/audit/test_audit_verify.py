"""Offline verification of bundles from a real gateway session: a good bundle
verifies; each file tampered in turn, records swapped or dropped, a forgery signed
with another key, a statement outside the plan, a grant that is not there: each is
caught, naming the file. And the README's openssl commands check the signature."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from audit_session import RecordedSession, record_session
from ci_flow_harness import ci_flow
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runner.audit import offline
from runner.audit.attestation import (
    attestation_statement,
    json_file,
    session_files,
    sha256_hex_bytes,
    sign_statement,
)
from runner.audit.bundle import (
    BUNDLE_FILES,
    Bundle,
    build_bundle,
    bundle_bytes,
    session_entries,
    write_bundle,
)
from runner.audit.chain import AuditEntry, EntryKind
from runner.audit.dsse import envelope_bytes, public_key_pem
from runner.audit.offline import VerifyReport, verify_bundle, verify_loaded
from runner.dryrun.scratch import scratch_database

SECOND_SQL = "CREATE TABLE audit_two (id int);\nDROP TABLE audit_demo;\n"
THIRD_SQL = "CREATE TABLE audit_three (id int);\nDROP TABLE audit_two;\n"
# What runner/apply.py runs around a plan on the same connection.
HOUSEKEEPING = (
    "SET lock_timeout = '5s'",
    "SHOW lock_timeout",
    "SELECT current_database()",
    "SELECT pg_try_advisory_lock(42)",
    "SELECT to_regclass('public.alembic_version')",
    "SELECT pg_advisory_unlock(42)",
)


@dataclass
class Sessions:
    main: RecordedSession
    outside_plan: RecordedSession  # ran a statement that is not in its plan
    housekeeping: RecordedSession  # ran the apply's settings, catalog reads and lock too

    @property
    def pem(self) -> str:
        return public_key_pem(self.main.key)


@pytest.fixture(scope="module")
def sessions(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sessions]:
    """Two sessions recorded once for the module (each test tampers a copy)."""
    key = Ed25519PrivateKey.generate()
    with (
        scratch_database(pg_url, prefix="signoff_test") as url,
        pytest.MonkeyPatch.context() as monkeypatch,
        ci_flow(url, tmp_path_factory.mktemp("gateway"), monkeypatch) as flow,
    ):
        main = record_session(flow, key=key)
        outside = record_session(
            flow, key=key, sql=SECOND_SQL, extra=("SELECT count(*) FROM patients",)
        )
        housekeeping = record_session(flow, key=key, sql=THIRD_SQL, extra=HOUSEKEEPING)
        yield Sessions(main, outside, housekeeping)


def _bundle(recorded: RecordedSession) -> Bundle:
    return build_bundle(entries=recorded.entries, envelope=recorded.envelope)


def _failed(report: VerifyReport) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks if not c.ok}


def test_a_good_bundle_verifies_from_a_file(sessions: Sessions, tmp_path: Path) -> None:
    path = write_bundle(_bundle(sessions.main), tmp_path / "good.tar.gz")
    report = verify_bundle(path, sessions.pem)
    assert report.ok, report.lines()
    names = [c.name for c in report.checks]
    assert names == [
        "bundle",
        "manifest",
        "signature",
        "attested files",
        "chain",
        "plan",
        "approvals",
        "identity",
    ]
    lines = report.lines()
    assert lines[-1].startswith("VERIFIED")
    assert any("1 statement(s) ran on verified grants" in line for line in lines)
    assert any("3 executed statement(s), all in plan" in line for line in lines)
    assert verify_bundle(f"file://{path}", sessions.pem).ok


def _flip(data: bytes) -> bytes:
    raw = bytearray(data)
    raw[len(raw) // 2] ^= 0x01
    return bytes(raw)


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_one_byte_flipped_in_any_file_is_caught_naming_it(sessions: Sessions, name: str) -> None:
    files = dict(_bundle(sessions.main).files)
    files[name] = _flip(files[name])
    report = verify_loaded(Bundle(files), sessions.pem)
    assert not report.ok
    assert name in report.lines()[next(i for i, c in enumerate(report.checks) if not c.ok)]
    assert report.lines()[-1].startswith("NOT VERIFIED")


def _remanifest(files: dict[str, bytes]) -> dict[str, bytes]:
    """The manifest rewritten to match the files: what a careful forger does."""
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = [
        {"name": n, "sha256": sha256_hex_bytes(files[n]), "size": len(files[n])}
        for n in sorted(files)
        if n != "manifest.json"
    ]
    return {**files, "manifest.json": json_file(manifest)}


@pytest.mark.parametrize("name", ["session.jsonl", "plan.json", "approvals.json", "identity.json"])
def test_an_attested_file_changed_with_its_manifest_is_caught(
    sessions: Sessions, name: str
) -> None:
    files = dict(_bundle(sessions.main).files)
    value = files[name].decode()
    # A meaningful edit: another approver, another principal, another text...
    changed = value.replace("bob", "mallory") if "bob" in value else value.replace("e", "E", 1)
    assert changed != value
    files[name] = changed.encode()
    failed = _failed(verify_loaded(Bundle(_remanifest(files)), sessions.pem))
    assert "manifest" not in failed
    assert f"{name} differs from what the gateway signed" in failed["attested files"]


def _lines_changed(
    files: dict[str, bytes], change: Callable[[list[str]], list[str]]
) -> dict[str, bytes]:
    lines = files["session.jsonl"].decode().splitlines(keepends=True)
    return _remanifest({**files, "session.jsonl": "".join(change(lines)).encode()})


def test_two_records_swapped_are_caught(sessions: Sessions) -> None:
    files = dict(_bundle(sessions.main).files)

    def swap(lines: list[str]) -> list[str]:
        lines[3], lines[4] = lines[4], lines[3]
        return lines

    failed = _failed(verify_loaded(Bundle(_lines_changed(files, swap)), sessions.pem))
    assert "session.jsonl differs" in failed["attested files"]
    assert "out of order" in failed["chain"] and "session.jsonl" in failed["chain"]


def test_a_record_dropped_is_caught(sessions: Sessions) -> None:
    files = dict(_bundle(sessions.main).files)
    entries = session_entries(Bundle(files))
    outcome_index = next(i for i, e in enumerate(entries) if e.kind is EntryKind.OUTCOME)

    def drop(lines: list[str]) -> list[str]:
        return lines[:outcome_index] + lines[outcome_index + 1 :]

    failed = _failed(verify_loaded(Bundle(_lines_changed(files, drop)), sessions.pem))
    assert "session.jsonl differs" in failed["attested files"]
    assert "session.jsonl" in failed["chain"]
    # The last record dropped: the chain still links, the signed head does not match.
    failed = _failed(verify_loaded(Bundle(_lines_changed(files, lambda x: x[:-1])), sessions.pem))
    assert "is not the signed chain head" in failed["chain"]


def test_a_record_edited_with_its_hash_recomputed_is_caught(sessions: Sessions) -> None:
    """Edit a statement's text and recompute its hash: the next entry's link breaks."""
    from runner.audit.chain import canonical_text, entry_hash

    files = dict(_bundle(sessions.main).files)
    entries = session_entries(Bundle(files))
    index = next(i for i, e in enumerate(entries) if e.kind is EntryKind.STATEMENT)
    old = entries[index]
    data = {**old.data, "text": "SELECT 1"}
    body = {**old.body(), "data": data}
    forged = AuditEntry(**{**old.__dict__, "data": data, "hash": entry_hash(old.prev_hash, body)})

    def edit(lines: list[str]) -> list[str]:
        lines[index] = canonical_text(forged.to_json()) + "\n"
        return lines

    failed = _failed(verify_loaded(Bundle(_lines_changed(files, edit)), sessions.pem))
    assert "does not link" in failed["chain"]
    assert "session.jsonl differs" in failed["attested files"]


def _forge(
    recorded: RecordedSession,
    key: Ed25519PrivateKey,
    keep: Callable[[AuditEntry], bool] = lambda _: True,
) -> Bundle:
    """A consistent bundle of the kept entries, attested and signed with ``key``."""
    entries = [e for e in recorded.entries if keep(e)]
    files = session_files(entries)
    envelope = sign_statement(attestation_statement(files), key)
    return build_bundle(entries=entries, envelope=envelope)


def test_a_forgery_signed_with_another_key_is_caught(sessions: Sessions) -> None:
    forged = _forge(
        sessions.main, Ed25519PrivateKey.generate(), lambda e: e.kind is not EntryKind.GRANT
    )
    failed = _failed(verify_loaded(forged, sessions.pem))
    assert "attestation.dsse.json" in failed["signature"]
    assert "no signature by key" in failed["signature"]
    # Re-signing alone (the same statement, another key) is caught the same way.
    files = dict(_bundle(sessions.main).files)
    payload = base64.b64decode(json.loads(files["attestation.dsse.json"])["payload"])
    other = sign_statement(json.loads(payload), Ed25519PrivateKey.generate())
    files["attestation.dsse.json"] = envelope_bytes(other)
    failed = _failed(verify_loaded(Bundle(_remanifest(files)), sessions.pem))
    assert set(failed) >= {"signature"} and "attestation.dsse.json" in failed["signature"]


def test_a_grant_missing_from_a_signed_session_is_caught(sessions: Sessions) -> None:
    """The approvals check on its own: even a gateway-signed bundle (the test holds the
    key) whose approved statement's grant is not in the session does not verify."""
    forged = _forge(sessions.main, sessions.main.key, lambda e: e.kind is not EntryKind.GRANT)
    failed = _failed(verify_loaded(forged, sessions.pem))
    assert set(failed) == {"approvals"}, failed
    assert "is not recorded in the session" in failed["approvals"]


def test_a_statement_outside_the_plan_is_caught(sessions: Sessions) -> None:
    report = verify_loaded(_bundle(sessions.outside_plan), sessions.pem)
    failed = _failed(report)
    assert set(failed) == {"plan"}, report.lines()
    assert "1 executed statement(s) not in plan" in failed["plan"]


def test_housekeeping_outside_the_plan_is_named_not_failed(sessions: Sessions) -> None:
    report = verify_loaded(_bundle(sessions.housekeeping), sessions.pem)
    assert report.ok, report.lines()
    (plan_line,) = [line for line in report.lines() if line.startswith("ok   plan:")]
    assert "2 executed statement(s), all in plan" in plan_line
    assert f"{len(HOUSEKEEPING)} housekeeping statement(s) outside it" in plan_line


@pytest.mark.parametrize(
    ("text", "housekeeping"),
    [
        *((text, True) for text in HOUSEKEEPING),
        ("SELECT version_num FROM alembic_version", True),
        ("SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_namespace n ON true", True),
        ("ROLLBACK", True),
        ("RESET ALL", True),
        ("SET TIME ZONE 'UTC'", True),
        ("select pg_catalog.version()", True),
        ("SET TIME ZONE 'UTC'; DROP TABLE t", False),
        ("SELECT count(*) FROM patients", False),  # a read of data, outside the plan
        ("SELECT setval('s', 1)", False),
        ("SELECT nextval('s')", False),
        ("SELECT * INTO x FROM pg_class", False),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", False),
        ("SELECT dblink_exec('x')", False),
        ("SET ROLE admin", False),
        ("SET SESSION AUTHORIZATION mallory", False),
        ("SET lock_timeout = 1; DROP TABLE t", False),
        ("SELECT 1; DROP TABLE t", False),
        ("SELECT 1 -- hidden", False),
        ("INSERT INTO t VALUES (1)", False),
    ],
)
def test_what_counts_as_housekeeping(text: str, housekeeping: bool) -> None:
    from runner.audit.readonly import is_housekeeping

    assert is_housekeeping(text) is housekeeping


def test_unsigned_bundle_never_verifies(sessions: Sessions) -> None:
    plan = sessions.main.plan.to_json()
    dry = build_bundle(entries=[], envelope=None, plan=plan, unsigned_reason="dry-run")
    failed = _failed(verify_loaded(dry, sessions.pem))
    assert "unsigned bundle (dry-run)" in failed["signature"]


def test_bad_inputs_are_one_check_line(sessions: Sessions, tmp_path: Path) -> None:
    report = verify_bundle(tmp_path / "missing.tar.gz", sessions.pem)
    assert not report.ok and report.checks[0].name == "bundle"
    report = verify_bundle(tmp_path / "missing.tar.gz", "not a key")
    assert report.checks[0].name == "public key" and "not a PEM Ed25519 key" in report.lines()[0]
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(bundle_bytes({"evil/../x": b""}))
    assert "path traversal" in verify_bundle(junk, sessions.pem).lines()[0]


def _doc_blocks() -> list[str]:
    """The shell blocks of runner.audit.offline's docstring, as an auditor copies them."""
    doc = offline.__doc__ or ""
    section = doc.split("Checking the signature with standard tools", 1)[1]
    blocks: list[str] = []
    current: list[str] | None = None
    for line in section.splitlines():
        if line.endswith("::"):
            current = []
            blocks.append("")
            continue
        if current is None:
            continue
        if line.startswith("    ") or not line.strip():
            if line.strip() or current:
                current.append(line[4:])
            blocks[-1] = "\n".join(current).strip() + "\n"
        else:
            current = None
    return blocks


def test_the_documented_openssl_commands_verify_and_refuse(
    sessions: Sessions, tmp_path: Path
) -> None:
    blocks = [b for b in _doc_blocks() if "jq" in b]
    assert len(blocks) == 2 and "openssl pkeyutl -verify" in blocks[0]
    write_bundle(_bundle(sessions.main), tmp_path / "bundle.tar.gz")
    (tmp_path / "gateway-ed25519.pem.pub").write_text(sessions.pem)
    script = "set -euo pipefail\n" + blocks[0] + blocks[1]
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Signature Verified Successfully" in done.stdout
    assert done.stdout.count(": OK") == 4  # the four attested files
    # Another key: openssl refuses.
    (tmp_path / "gateway-ed25519.pem.pub").write_text(public_key_pem(Ed25519PrivateKey.generate()))
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "Signature Verified Successfully" not in done.stdout


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``signoff audit ...`` as a process (the group, until runner/cli.py registers it)."""
    import sys

    code = "import sys; from runner.cli_audit import audit; audit(prog_name='signoff audit')"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )


def test_cli_verify_exit_codes_and_lines(sessions: Sessions, tmp_path: Path) -> None:
    good = write_bundle(_bundle(sessions.main), tmp_path / "good.tar.gz")
    pub = tmp_path / "gw.pub"
    pub.write_text(sessions.pem)
    done = _cli("verify", str(good), "--public-key", str(pub))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 9 and lines[-1].startswith("VERIFIED")
    files = dict(_bundle(sessions.main).files)
    files["approvals.json"] = _flip(files["approvals.json"])
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bundle_bytes(files))
    done = _cli("verify", str(bad), "--public-key", str(pub))
    assert done.returncode == 1
    assert "FAIL manifest: manifest.json: approvals.json: sha256 differs" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    done = _cli("verify", str(good), "--public-key", str(tmp_path / "none.pub"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"signoff: error: --public-key {tmp_path / 'none.pub'}: cannot read it "
        "(No such file or directory); pass the gateway's public key file"
    ]


def _interleaved() -> list[AuditEntry]:
    """Two sessions' entries interleaved in one chain, as the gateway writes them."""
    from runner.audit.chain import GENESIS_HASH, NewEntry, build_entries
    from runner.audit.entries import event_entry

    principal = {"iss": "https://issuer.example", "sub": "repo:acme/ehr-api", "actor": "alice"}
    entries: list[AuditEntry] = []

    def add(new: NewEntry) -> AuditEntry:
        last_seq, last_hash = (entries[-1].seq, entries[-1].hash) if entries else (0, GENESIS_HASH)
        entry = build_entries([new], last_seq, last_hash)[0][0]
        entries.append(entry)
        return entry

    sessions = ("so_" + "a" * 24, "so_" + "b" * 24)
    for sid in sessions:
        add(event_entry(sid, "session-created", principal=principal, claims=principal))
    for n in range(3):
        for sid in sessions:
            data = {"text": "SELECT 1", "fingerprint": "f" * 64, "decision": "allowed"}
            statement = add(NewEntry(EntryKind.STATEMENT, sid, data))
            add(
                NewEntry(EntryKind.OUTCOME, sid, {"outcome": "SELECT 1", "n": n}, ref=statement.seq)
            )
    return entries


def test_a_session_interleaved_with_another_verifies_and_foreign_entries_do_not(
    sessions: Sessions,
) -> None:
    chain = _interleaved()
    mine = [e for e in chain if e.session_id == chain[0].session_id]
    assert [e.seq for e in mine] != list(range(mine[0].seq, mine[0].seq + len(mine)))  # gaps
    key = sessions.main.key
    envelope = sign_statement(attestation_statement(session_files(mine)), key)
    bundle = build_bundle(entries=mine, envelope=envelope)
    report = verify_loaded(bundle, sessions.pem)
    assert report.ok, report.lines()  # no plan, and nothing but housekeeping ran
    # An entry of the other session slipped in (even re-attested with the key) is named.
    other = next(e for e in chain if e.session_id != mine[0].session_id)
    from runner.audit.chain import canonical_text

    files = dict(bundle.files)
    lines = files["session.jsonl"].decode().splitlines(keepends=True)
    lines.insert(1, canonical_text(other.to_json()) + "\n")
    files["session.jsonl"] = "".join(lines).encode()
    failed = _failed(verify_loaded(Bundle(_remanifest(files)), sessions.pem))
    assert f"entry {other.seq} is of session {other.session_id}" in failed["chain"]


def test_every_catalog_read_of_the_planner_is_housekeeping() -> None:
    # `signoff apply --database-url` through the gateway reads the target's facts in the
    # same session as the plan: each of those queries must verify as housekeeping, or a
    # bundle fails with "executed statement(s) not in plan" (the pg_proc reader once did).
    from runner.audit.readonly import is_housekeeping
    from runner.dryrun import facts

    queries = [
        value
        for name, value in vars(facts).items()
        if name.endswith("_SQL") and isinstance(value, str)
    ]
    assert len(queries) >= 3
    queries += ["SHOW server_version_num", "SELECT pg_catalog.current_setting('search_path')"]
    assert [q for q in queries if not is_housekeeping(q)] == []
