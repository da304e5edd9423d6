"""`signoff audit replay BUNDLE` on real bundles: the one `signoff demo` leaves (who,
the order of events, the approver, the DROP on its grant) and one from a gateway
session with a refused statement (the refusal and why); `--pace fast` and `--pace
real` (gaps slept, each bounded); `--public-key` verifies first; bad input is one
line; untrusted text cannot drive the terminal."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_audit_report import (
    REFUSED,
    DemoBundle,
    RefusingSession,
    demo_bundle,
    refusing_bundle_session,
    signoff_cli,
)

from runner.audit.bundle import write_bundle
from runner.audit.dsse import public_key_pem
from runner.audit.replay import MAX_GAP_SECONDS, play, printable, session_view, timeline

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} +\+\d+\.\d{3}s  (\S+) +(.*)$")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoBundle]:
    with demo_bundle(tmp_path_factory.mktemp("demo")) as made:
        yield made


@pytest.fixture(scope="module")
def refusing(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefusingSession]:
    with refusing_bundle_session(pg_url, tmp_path_factory.mktemp("gateway")) as made:
        yield made


def events(output: str) -> list[tuple[str, str]]:
    return [
        (m.group(1), m.group(2)) for m in (LINE.match(line) for line in output.splitlines()) if m
    ]


def test_replay_tells_the_demo_session_in_order(demo: DemoBundle) -> None:
    done = signoff_cli("audit", "replay", str(demo.path), "--pace", "fast")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.startswith("Session so_")
    assert re.search(r"who: +dana \(repo:acme/ehr-api:environment:production\)", out)
    assert re.search(r"what: +acme/ehr-api @ refs/heads/main [0-9a-f]{12}, run \d+", out)
    assert f"plan:  {demo.plan_hash[:12]} (4 statement(s), 1 needing approval)" in out
    assert "not verified here: pass --public-key" in out
    lines = events(out)
    labels = [label for label, _ in lines]
    # The plan's review, then the approval, then the apply's connection and the DROP on
    # its grant, then COMMIT: the chain's order.
    first = {label: labels.index(label) for label in reversed(labels)}
    assert labels[0] == "session" and lines[0][1].startswith("created for dana")
    assert first["plan"] < first["grant"] < first["approved"] < first["ran+grant"]
    drop = next(text for label, text in lines if label == "ran+grant")
    assert drop.startswith("ALTER TABLE patients DROP COLUMN ssn -> ALTER TABLE, ")
    assert re.search(r"\d+\.\d{3} ms \[on grant gr_[0-9a-f]+ by riley \(http://", drop)
    approved = next(text for label, text in lines if label == "approved")
    assert approved.startswith(f"plan {demo.plan_hash[:12]} approved by riley (http://")
    assert "UPDATE alembic_version" in " ".join(t for _, t in lines[labels.index("ran+grant") :])
    after_drop = [t for label, t in lines[labels.index("ran+grant") :] if label == "ran"]
    assert any(t.startswith("COMMIT -> COMMIT") for t in after_drop)
    assert "connect" in labels and "closed" in labels
    assert any(t.startswith("SELECT n.nspname") and "rows" in t for _, t in lines)
    assert out.rstrip().endswith("masked columns: none")
    assert "approvals: riley" in out
    assert "0 refused" in out


def test_replay_verifies_first_with_a_public_key(demo: DemoBundle, tmp_path: Path) -> None:
    done = signoff_cli("audit", "replay", str(demo.path), "--public-key", str(demo.public_key))
    assert done.returncode == 0, done.stderr
    assert "  VERIFIED: " in done.stdout and "not verified here" not in done.stdout
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = tmp_path / "other.pub"
    other.write_text(public_key_pem(Ed25519PrivateKey.generate()))
    done = signoff_cli("audit", "replay", str(demo.path), "--public-key", str(other))
    assert done.returncode == 1
    assert "  NOT VERIFIED: " in done.stdout and "signature" in done.stdout
    assert events(done.stdout)  # still replayed, under the verdict


def test_replay_shows_the_refusal_and_why(refusing: RefusingSession, tmp_path: Path) -> None:
    path = write_bundle(refusing.bundle(), tmp_path / "refusing.tar.gz")
    done = signoff_cli("audit", "replay", str(path))
    assert done.returncode == 0, done.stderr
    lines = events(done.stdout)
    refused = [text for label, text in lines if label == "REFUSED"]
    assert len(refused) == 1 and refused[0].startswith(f"{REFUSED} -- ")
    assert "SO111" in refused[0] or "approval" in refused[0]
    labels = [label for label, _ in lines]
    assert labels.index("approved") < labels.index("ran+grant") < labels.index("REFUSED")
    # The markup statement is shown as it is (a terminal does not interpret it).
    assert any("<script>" in text for label, text in lines if label == "ran")
    assert "1 refused" in done.stdout and "approvals: bob" in done.stdout


def test_pace_real_sleeps_the_recorded_gaps_bounded(refusing: RefusingSession) -> None:
    view = session_view(refusing.bundle().files)
    lines = timeline(view)
    slept: list[float] = []
    shown: list[str] = []
    total = play(lines, pace="real", echo=shown.append, sleep=slept.append)
    assert len(shown) == len(lines) and slept and total == pytest.approx(sum(slept))
    recorded = [ts for ts, _ in lines if ts is not None]
    span = (recorded[-1] - recorded[0]).total_seconds()
    assert sum(slept) == pytest.approx(span, abs=1e-6)  # gaps under 2 s: slept as recorded
    # A long gap is bounded.
    start = datetime(2026, 1, 1, tzinfo=UTC)
    gappy = [
        (start, "a"),
        (start + timedelta(hours=3), "b"),
        (start + timedelta(hours=3, seconds=1), "c"),
    ]
    slept.clear()
    play(gappy, pace="real", echo=shown.append, sleep=slept.append)
    assert slept == [MAX_GAP_SECONDS, 1.0]
    slept.clear()
    play(gappy, pace="fast", echo=shown.append, sleep=slept.append)
    assert slept == []


def test_pace_fast_via_the_cli_prints_at_once(demo: DemoBundle) -> None:
    fast = signoff_cli("audit", "replay", str(demo.path), "--pace", "fast")
    real = signoff_cli("audit", "replay", str(demo.path), "--pace", "real")
    assert fast.returncode == real.returncode == 0
    assert fast.stdout == real.stdout  # the same story, only the pauses differ


def test_untrusted_text_cannot_drive_the_terminal() -> None:
    assert printable("DROP\x1b[2J TABLE\r\n") == "DROP\\x1b[2J TABLE\\r\\n"


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    missing = signoff_cli("audit", "replay", str(tmp_path / "nope.tar.gz"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "cannot read it" in missing.stderr and "Traceback" not in missing.stderr
    pace = signoff_cli("audit", "replay", str(tmp_path / "nope.tar.gz"), "--pace", "slow")
    assert pace.returncode == 2 and "'slow' is not one of 'fast', 'real'" in pace.stderr


def test_an_unsigned_bundle_says_so(tmp_path: Path) -> None:
    from runner.audit.bundle import build_bundle
    from runner.plan.build import SqlSource, build_plan
    from runner.plan.policy import Policy

    plan = build_plan([SqlSource("a.sql", "DROP TABLE x;")], policy=Policy(target="ehr"))
    bundle = build_bundle(entries=[], envelope=None, plan=plan.to_json(), unsigned_reason="dry-run")
    path = write_bundle(bundle, tmp_path / "dry.tar.gz")
    done = signoff_cli("audit", "replay", str(path))
    assert done.returncode == 0, done.stderr
    assert "  UNSIGNED bundle (dry-run): not evidence of a session" in done.stdout
    assert "no verified identity" in done.stdout and "verified by the gateway" not in done.stdout
    assert f"plan:  {plan.short_hash} (1 statement(s), 1 needing approval)" in done.stdout
