"""``signoff demo``: the newcomer's one command, run as they would run it (a
process), and in-process for the "no" answer. Each run gets an embedded
PostgreSQL of its own (SIGNOFF_HOME in a temp dir), so "nothing left behind" is
checked on a server no other test holds."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.audit.bundle import read_bundle
from runner.demo.run import DemoResult, run_demo
from runner.job import JobOutcome

SIGNOFF = [sys.executable, "-m", "runner.cli"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home() -> Iterator[Path]:
    """SIGNOFF_HOME for one demo: its own embedded cluster. Not under tmp_path: every
    pytest session that starts (anyone's) takes o+x off /tmp/pytest-of-<user>, and
    the server's system user (when we are root) must traverse to its data dir."""
    path = Path(tempfile.mkdtemp(prefix="signoff-demo-home-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def signoff(*args: str, home: Path, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIGNOFF, *args],
        capture_output=True,
        text=True,
        check=False,
        stdin=stdin,
        env={**os.environ, "SIGNOFF_HOME": str(home)},
        cwd=ROOT,
        timeout=300,
    )


def session_entries(bundle: Path) -> list[dict[str, Any]]:
    text = read_bundle(bundle).files["session.jsonl"].decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def loopback_ports(output: str) -> list[int]:
    """Every 127.0.0.1 port the demo said it listened on (issuer, GitHub, gateway)."""
    return sorted({int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", output)})


def refuses(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def assert_embedded_server_stopped(home: Path) -> None:
    pgdata = home / "pgdata"
    assert (pgdata / "PG_VERSION").exists(), "the demo did not use this SIGNOFF_HOME"
    assert not (pgdata / "postmaster.pid").exists(), "the embedded PostgreSQL still runs"
    assert json.loads((home / "pgdata.handles.json").read_text()) == []


def rewrite_member(bundle: Path, name: str, out: Path) -> None:
    """The bundle with one byte of ``name`` flipped, the archive otherwise intact."""
    with tarfile.open(bundle, "r:gz") as source, tarfile.open(out, "w:gz") as target:
        for member in source:
            handle = source.extractfile(member)
            assert handle is not None
            data = bytearray(handle.read())
            if member.name == name:
                data[len(data) // 2] ^= 0x01
            member.size = len(data)
            target.addfile(member, io.BytesIO(bytes(data)))


def test_demo_yes_applies_the_approved_drop_and_leaves_a_bundle_that_verifies(
    tmp_path: Path, home: Path
) -> None:
    out = tmp_path / "audit"
    done = signoff("demo", "--yes", "--out", str(out), home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout

    # Numbered steps, the job's own lines indented under them.
    steps = re.findall(r"^(\d+)\. ", output, flags=re.M)
    assert steps == [str(n) for n in range(1, len(steps) + 1)] and len(steps) >= 8
    # The plan comment the gateway wrote, read back from the code host.
    assert "needs approval" in output
    assert "SO102 drop-column [destructive, needs approval]" in output
    assert "/signoff approve " in output
    assert "riley: /signoff approve " in output
    # The DROP ran through the gateway, shown by its SQL, after the gateway's approval.
    assert re.search(r"^\s+\[2/4\] ok: ALTER TABLE patients DROP COLUMN ssn$", output, re.M)
    assert "the gateway verified the approval of riley" in output
    assert "patients.ssn is gone" in output
    assert output.rstrip().endswith("the bundle verified")

    [bundle] = out.glob("*.tar.gz")
    public_key = bundle.with_name(bundle.name.removesuffix(".tar.gz") + ".gateway.pub.pem")
    report = bundle.with_name(bundle.name.removesuffix(".tar.gz") + ".report.html")
    assert public_key.is_file() and report.is_file()
    assert f"signoff audit verify {bundle} --public-key {public_key}" in output
    # The page for people, out of the bundle (its content is runner/audit/report.py's).
    short_hash = re.search(r"/signoff approve ([0-9a-f]{12})", output)
    assert short_hash is not None
    page = report.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html>") and short_hash[1] in page

    verified = signoff("audit", "verify", str(bundle), "--public-key", str(public_key), home=home)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "VERIFIED" in verified.stdout

    # The session's records in the bundle: the DROP ran approved, on riley's grant.
    statements = [e["data"] for e in session_entries(bundle) if e["kind"] == "statement"]
    drops = [s for s in statements if "DROP COLUMN ssn" in str(s.get("text"))]
    assert len(drops) == 1, drops
    assert drops[0]["decision"] == "approved"
    assert drops[0]["grant"]["approver"] == "riley"
    assert drops[0]["database"] == "production"
    # The database's own guard let the DROP through on the gateway's mark, and told the
    # gateway what it dropped; the upstream role is an owner, not a superuser.
    outcomes = [e["data"] for e in session_entries(bundle) if e["kind"] == "outcome"]
    nested = [n for o in outcomes for n in o.get("nested", [])]
    assert any("patients.ssn" in str(n.get("identity")) for n in nested), outcomes
    assert "server-side guard installed" in output
    assert "is a superuser" not in output + done.stderr

    # One flipped byte in a file of the bundle fails verification, naming the file.
    tampered = tmp_path / "tampered.tar.gz"
    rewrite_member(bundle, "session.jsonl", tampered)
    refused = signoff("audit", "verify", str(tampered), "--public-key", str(public_key), home=home)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "session.jsonl" in refused.stdout

    # Nothing left behind: the embedded server stopped, every loopback port closed.
    assert_embedded_server_stopped(home)
    ports = loopback_ports(output)
    assert len(ports) >= 4, output  # issuer, GitHub, gateway HTTP and PostgreSQL
    assert [p for p in ports if not refuses(p)] == []


def test_demo_asks_in_the_terminal_and_a_y_approves(tmp_path: Path, home: Path) -> None:
    controller, terminal = os.openpty()  # stdin is a terminal: the demo asks there
    try:
        running = subprocess.Popen(
            [*SIGNOFF, "demo", "--out", str(tmp_path / "audit")],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SIGNOFF_HOME": str(home)},
            cwd=ROOT,
        )
        os.write(controller, b"y\n")  # typed ahead: the terminal holds it for the prompt
        stdout, stderr = running.communicate(timeout=300)
    finally:
        os.close(controller)
        os.close(terminal)
    assert running.returncode == 0, stdout + stderr
    assert re.search(r"Approve as riley \(/signoff approve [0-9a-f]{12}\)\? \[y/N\]", stdout)
    assert "riley: /signoff approve " in stdout
    assert "patients.ssn is gone" in stdout
    assert_embedded_server_stopped(home)


def test_demo_without_a_terminal_answers_no_and_the_job_stops(tmp_path: Path, home: Path) -> None:
    done = signoff("demo", "--out", str(tmp_path / "audit"), home=home, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no terminal to answer; pass --yes to approve" in done.stdout
    assert "riley: /signoff reject" in done.stdout
    assert "stopped: rejected: rejected by riley" in done.stdout
    assert "patients.ssn is still there" in done.stdout
    assert "DROP COLUMN ssn" not in "\n".join(
        line for line in done.stdout.splitlines() if re.match(r"\s+\[\d+/\d+\]", line)
    )
    assert "Traceback" not in done.stderr
    assert_embedded_server_stopped(home)


def test_demo_a_no_in_process_rejects_keeps_the_column_and_leaves_no_thread(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_HOME", str(home))
    lines: list[str] = []
    questions: list[str] = []

    def ask(question: str) -> bool:
        questions.append(question)
        return False

    threads_before = set(threading.enumerate())
    result: DemoResult = run_demo(tmp_path / "audit", yes=False, say=lines.append, ask=ask)

    assert [q for q in questions if q.startswith("Approve as riley")] == questions
    assert len(questions) == 1
    assert result.approved is False
    assert result.outcome is JobOutcome.REJECTED
    assert result.reason == "rejected by riley"
    assert result.exit_status == 1
    assert result.ssn_column is True  # nothing ran: the column and its values are there
    assert result.needs_approval == ["SO102"]
    assert "ALTER TABLE patients DROP COLUMN ssn" in result.plan_comment
    # A rejected run is evidence too: its bundle is signed and verifies.
    assert result.bundle is not None and result.verified
    drops = [
        e
        for e in session_entries(result.bundle)
        if e["kind"] == "statement" and "DROP COLUMN" in str(e["data"].get("text"))
    ]
    assert drops == []
    assert result.stopped[-1] == "embedded PostgreSQL stopped"
    assert "gateway stopped (its HTTP and PostgreSQL ports closed)" in result.stopped
    assert set(threading.enumerate()) - threads_before == set()
    assert_embedded_server_stopped(home)


def test_demo_out_that_is_a_file_is_one_line_and_exit_2(tmp_path: Path, home: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("x")
    done = signoff("demo", "--yes", "--out", str(occupied), home=home)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "--out" in done.stderr
    assert not (home / "pgdata").exists()  # refused before anything started
