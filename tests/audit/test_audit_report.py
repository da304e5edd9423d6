"""The auditor's report (runner/audit/report.py) on real bundles: the one `signoff
demo` leaves (the page `signoff apply` wrote into it, and the page `signoff audit
report` renders with the verdict computed at viewing) and one from a gateway session
with a refused statement and a statement text that is markup. Escaping, every
section, links only for http(s), and the page rendered in headless Chromium (Debian's
`chromium`): its DOM shows the approver, the plan hash and the verdict, and the test
saves a screenshot in its tmp_path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import psycopg
import pytest
from audit_session import APPROVER, PLAN_SQL
from ci_flow_harness import HEAD, REPO, Flow, ci_flow
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runner.audit.attestation import gateway_attestation
from runner.audit.bundle import REPORT_PLACEHOLDER_MARK, Bundle, build_bundle, read_bundle
from runner.audit.chain import AuditEntry, EntryKind
from runner.audit.dsse import key_id, public_key_pem
from runner.audit.offline import verify_loaded
from runner.audit.report import REPORT_MARK, link, render_report
from runner.plan.build import SqlSource, build_plan
from runner.plan.policy import Policy

SIGNOFF = [sys.executable, "-m", "runner.cli"]
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "SELECT '<script>alert(\"x\")</script>' AS note FROM patients LIMIT 1"
REFUSED = "DELETE FROM patients"  # SO111: every row, no grant
SECTIONS = (
    "verdict",
    "identity",
    "approvals",
    "timeline",
    "plan",
    "statements",
    "refused",
    "masked",
    "evidence",
)


def signoff_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIGNOFF, *args], capture_output=True, text=True, check=False, cwd=ROOT, timeout=120
    )


# -- real bundles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoBundle:
    path: Path
    public_key: Path
    files: dict[str, bytes]

    @property
    def plan_hash(self) -> str:
        return str(json.loads(self.files["plan.json"])["hash"])


@contextmanager
def demo_bundle(out: Path) -> Iterator[DemoBundle]:
    """`signoff demo --yes --out OUT`: the bundle `signoff apply` wrote through the
    gateway. SIGNOFF_HOME outside pytest's tmp (the server's system user must reach it)."""
    home = Path(tempfile.mkdtemp(prefix="signoff-report-home-"))
    try:
        done = subprocess.run(
            [*SIGNOFF, "demo", "--yes", "--out", str(out)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "SIGNOFF_HOME": str(home)},
            cwd=ROOT,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        [bundle] = out.glob("*.tar.gz")
        key = bundle.with_name(bundle.name.removesuffix(".tar.gz") + ".gateway.pub.pem")
        yield DemoBundle(bundle, key, read_bundle(bundle).files)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoBundle]:
    with demo_bundle(tmp_path_factory.mktemp("demo")) as made:
        yield made


@dataclass(frozen=True)
class RefusingSession:
    entries: list[AuditEntry]
    envelope: dict[str, Any]
    key: Ed25519PrivateKey

    def bundle(self) -> Bundle:
        return build_bundle(
            entries=self.entries, envelope=self.envelope, render_report=render_report
        )


def refusing_session(flow: Flow) -> RefusingSession:
    """A gateway session whose plan is approved and run, then a statement whose text is
    markup (allowed: a read), then a destructive statement with no grant (refused)."""
    import httpx

    key = Ed25519PrivateKey.generate()
    gateway = flow.gateway
    service = gateway.running.running.service
    assert service is not None
    session = gateway.session()
    plan = build_plan([SqlSource("demo.sql", PLAN_SQL)], policy=Policy(target="ehr"))
    auth = {"Authorization": f"Bearer {session['secret']}"}
    base = f"{gateway.http}/v1/sessions/{session['session_id']}"
    review = {"platform": "github", "repository": REPO, "number": 7, "head_sha": HEAD}
    response = httpx.post(
        f"{base}/plans", json={"plan": plan.to_json(), "review": review}, headers=auth, timeout=30
    )
    assert response.status_code == 201, response.text
    flow.approve(APPROVER, plan.hash)
    assert httpx.get(f"{base}/plans/{plan.hash}", headers=auth, timeout=30).json()["state"] == (
        "approved"
    )
    with gateway.connect(session) as conn:
        for statement in plan.statements:
            conn.execute(statement.text)
        conn.execute(SCRIPT)
        with pytest.raises(psycopg.Error):
            conn.execute(REFUSED)
    store = service.store
    want = len(plan.statements) + 2
    deadline = time.monotonic() + 10
    while (
        sum(e.kind is EntryKind.OUTCOME for e in store.entries(session_id=session["session_id"]))
        < want
    ):
        assert time.monotonic() < deadline, "the outcomes were never recorded"
        time.sleep(0.02)
    envelope = gateway_attestation(store, session["session_id"], key)
    return RefusingSession(store.entries(session_id=session["session_id"]), envelope, key)


@contextmanager
def refusing_bundle_session(pg_url: str, work: Path) -> Iterator[RefusingSession]:
    from runner.dryrun.scratch import scratch_database

    with (
        scratch_database(pg_url, prefix="signoff_test") as url,
        pytest.MonkeyPatch.context() as monkeypatch,
        ci_flow(url, work, monkeypatch) as flow,
    ):
        yield refusing_session(flow)


@pytest.fixture(scope="module")
def refusing(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefusingSession]:
    with refusing_bundle_session(pg_url, tmp_path_factory.mktemp("gateway")) as made:
        yield made


# -- reading the page ------------------------------------------------------------------------


class _Page(HTMLParser):
    """Text per section id, the tags seen, and every href: the page as a reader sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[str]] = {}
        self.tags: set[str] = set()
        self.hrefs: list[str] = []
        self.external: list[str] = []
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        if tag == "section":
            self._current = values.get("id")
            self.sections[self._current or ""] = []
        if tag == "a" and values.get("href"):
            self.hrefs.append(str(values["href"]))
        for name in ("src", "srcset"):
            if values.get(name):
                self.external.append(str(values[name]))
        if tag == "link":
            self.external.append(str(values.get("href")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.sections[self._current].append(data)

    def text(self, section: str) -> str:
        return " ".join(" ".join(self.sections[section]).split())


def parse(page: bytes) -> _Page:
    parser = _Page()
    parser.feed(page.decode("utf-8"))
    return parser


# -- the page in the bundle ------------------------------------------------------------------


def test_apply_writes_the_auditors_report_into_its_bundle(demo: DemoBundle) -> None:
    page = demo.files["report.html"]
    assert REPORT_MARK.encode() in page
    assert REPORT_PLACEHOLDER_MARK.encode() not in page
    read = parse(page)
    assert [s for s in SECTIONS if s not in read.sections] == []
    assert read.external == [] and "script" not in read.tags  # self-contained, no script
    assert "svg" in read.tags
    who = read.text("identity")
    for value in ("dana", "acme/ehr-api", "refs/heads/main", "deploy.yml", "http://127.0.0.1:"):
        assert value in who
    assert re.search(r"commit sha [0-9a-f]{40}", who)
    assert re.search(r"run id \d+", who)
    approvals = read.text("approvals")
    assert "riley" in approvals and "plan-approved" in approvals
    assert any(h.endswith("#issuecomment-1007") for h in read.hrefs), read.hrefs
    plan = read.text("plan")
    assert demo.plan_hash in plan
    assert "SO102 drop-column: drops column patients.ssn and its data (needs-approval)" in plan
    ran = read.text("statements")
    assert "ALTER TABLE patients DROP COLUMN ssn" in ran and "ALTER TABLE" in ran
    assert "approved riley" in ran  # the decision, then the grant's approver
    assert "UPDATE 1 1" in ran  # the tag, then its rows
    assert "None: the gateway refused no statement" in read.text("refused")
    assert read.text("masked").startswith("Masked columns none")
    # Written before the bundle is signed, by the runner: it says it is no verdict,
    # and how to get one.
    verdict = read.text("verdict")
    assert "NOT VERIFIED BY THIS PAGE" in verdict
    assert "signoff audit verify BUNDLE.tar.gz --public-key GATEWAY.pub" in verdict
    assert verdict.count("match") == 4 and "DIFFER" not in verdict
    evidence = read.text("evidence")
    assert demo.plan_hash in evidence
    for name in ("session.jsonl", "plan.json", "approvals.json", "identity.json"):
        assert name in evidence


def test_the_page_signoff_audit_report_renders_carries_the_verdict(
    demo: DemoBundle, tmp_path: Path
) -> None:
    out = tmp_path / "viewed.html"
    done = signoff_cli(
        "audit", "report", str(demo.path), "--public-key", str(demo.public_key), "--out", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("VERIFIED: ")
    verdict = parse(out.read_bytes()).text("verdict")
    assert "VERIFIED: all 8 checks passed" in verdict
    for check in ("signature", "manifest", "chain", "plan", "approvals", "identity"):
        assert f"ok {check}" in verdict
    assert key_id_of(demo.public_key)[:16] in verdict

    # Without --out: next to the bundle, not over the page taken out of it.
    taken_out = demo.path.with_name(demo.path.name.removesuffix(".tar.gz") + ".report.html")
    before = taken_out.read_bytes()
    done = signoff_cli("audit", "report", str(demo.path), "--public-key", str(demo.public_key))
    default = demo.path.with_name(demo.path.name.removesuffix(".tar.gz") + ".report-viewed.html")
    assert done.returncode == 0 and f"report: {default}" in done.stdout
    assert "VERIFIED: all 8 checks passed" in parse(default.read_bytes()).text("verdict")
    assert taken_out.read_bytes() == before

    # Another key: the page is written and says NOT VERIFIED; exit 1.
    other = tmp_path / "other.pub"
    other.write_text(public_key_pem(Ed25519PrivateKey.generate()))
    done = signoff_cli(
        "audit", "report", str(demo.path), "--public-key", str(other), "--out", str(out)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    verdict = parse(out.read_bytes()).text("verdict")
    assert "NOT VERIFIED" in verdict and "FAIL signature" in verdict
    assert "what the bundle claims, not evidence" in verdict


def key_id_of(public_key: Path) -> str:
    from runner.audit.dsse import load_public_key_pem

    return key_id(load_public_key_pem(public_key.read_bytes()))


def test_bad_input_to_audit_report_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a bundle")
    key = tmp_path / "k.pub"
    key.write_text(public_key_pem(Ed25519PrivateKey.generate()))
    done = signoff_cli("audit", "report", str(junk), "--public-key", str(key))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a readable .tar.gz" in done.stderr
    assert "Traceback" not in done.stderr


# -- escaping and refusals -------------------------------------------------------------------


def test_statement_text_that_is_markup_is_shown_as_text(refusing: RefusingSession) -> None:
    page = refusing.bundle().files["report.html"]
    assert b"<script>" not in page
    assert b"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    read = parse(page)
    assert "script" not in read.tags
    assert '<script>alert("x")</script>' in read.text("statements")  # shown, as text
    assert "outside the plan" in read.text("statements")


def test_refused_statements_are_listed_with_why(refusing: RefusingSession) -> None:
    bundle = refusing.bundle()
    read = parse(bundle.files["report.html"])
    refused = read.text("refused")
    assert REFUSED in refused
    record = next(
        e.data
        for e in refusing.entries
        if e.kind is EntryKind.STATEMENT and e.data.get("decision") == "blocked"
    )
    assert record["reason"] and " ".join(str(record["reason"]).split()) in refused
    assert REFUSED not in read.text("statements")  # not among what ran
    assert "#c53030" in bundle.files["report.html"].decode()  # a red mark in the picture
    # The viewed page: verified with the session's key (the read outside the plan
    # fails the plan check, which the page says first).
    report = verify_loaded(bundle, public_key_pem(refusing.key))
    viewed = parse(render_report(bundle.files, verification=report))
    assert "NOT VERIFIED" in viewed.text("verdict") and "FAIL plan" in viewed.text("verdict")


def test_only_http_urls_become_links() -> None:
    assert link("https://github.com/a/b/pull/1#issuecomment-2").startswith('<a href="https://')
    assert "<a" not in link("javascript:alert(1)")
    assert link('https://x.example/"><script>') == (
        '<a href="https://x.example/&quot;&gt;&lt;script&gt;">'
        "https://x.example/&quot;&gt;&lt;script&gt;</a>"
    )


def test_a_bundle_whose_files_do_not_read_still_gets_a_page() -> None:
    page = render_report({"session.jsonl": b"{not json\n", "identity.json": b"[]"})
    read = parse(page)
    assert [s for s in SECTIONS if s not in read.sections] == []
    assert "session.jsonl line 1: not JSON" in read.text("verdict")
    assert "unsigned bundle" in read.text("verdict")


# -- headless Chromium -----------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    return found


def _chromium_run(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_report_renders_in_chromium(
    demo: DemoBundle, refusing: RefusingSession, tmp_path: Path
) -> None:
    binary = _chromium()
    viewed = tmp_path / "report.html"
    done = signoff_cli(
        "audit",
        "report",
        str(demo.path),
        "--public-key",
        str(demo.public_key),
        "--out",
        str(viewed),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    in_bundle = tmp_path / "in-bundle.report.html"
    in_bundle.write_bytes(demo.files["report.html"])
    # A session with a refusal, viewed with its key (NOT VERIFIED: a read outside the plan).
    bundle = refusing.bundle()
    with_refusal = tmp_path / "refusal.report.html"
    with_refusal.write_bytes(
        render_report(
            bundle.files,
            verification=verify_loaded(bundle, public_key_pem(refusing.key)),
            key_id=key_id(refusing.key.public_key()),
        )
    )
    for page in (viewed, in_bundle, with_refusal):
        shot = page.with_suffix(".png")
        done = _chromium_run(
            binary, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()
        )
        assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        print(f"screenshot: {shot}")
    dom = _chromium_run(binary, "--dump-dom", viewed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    text = " ".join(text.split())
    assert "riley" in text  # the approver
    assert demo.plan_hash in text  # the plan hash
    assert "VERIFIED: all 8 checks passed" in text  # the verdict
    assert "dana" in text and "ALTER TABLE patients DROP COLUMN ssn" in text
    dom = _chromium_run(binary, "--dump-dom", in_bundle.as_uri())
    assert "NOT VERIFIED BY THIS PAGE" in dom.stdout and demo.plan_hash in dom.stdout
    dom = _chromium_run(binary, "--dump-dom", with_refusal.as_uri())
    assert "NOT VERIFIED:" in dom.stdout and REFUSED in dom.stdout
    assert "&lt;script&gt;" in dom.stdout and "<script>" not in dom.stdout


def test_the_timeline_of_a_long_session_stays_bounded() -> None:
    from runner.audit.replay import SessionView
    from runner.audit.timeline import MAX_MARKS, timeline_svg

    records = [
        {
            "kind": "statement",
            "seq": n,
            "ts": f"2026-12-04T02:00:{n // 1000:02d}.{n % 1000:03d}000Z",
            "text": f"SELECT {n}",
            "decision": "blocked" if n == 7 else "allowed",
            "status": "not-run" if n == 7 else "completed",
            "duration_ms": 0.5,
        }
        for n in range(MAX_MARKS + 500)
    ]
    svg = timeline_svg(SessionView(records=records))
    assert "500 later event(s) not drawn" in svg
    assert svg.count("<rect") <= MAX_MARKS + 10  # the marks and the legend's swatches
    assert svg.count('fill="#c53030" fill-opacity') == 1  # the one refusal, in red


def test_hostile_claims_urls_and_findings_are_text() -> None:
    hostile = '<img src=x onerror="alert(1)">'
    files = {
        "identity.json": json.dumps(
            {"principal": {"iss": "https://t.example", "sub": hostile, "actor": hostile}}
        ).encode(),
        "approvals.json": json.dumps(
            {
                "verdicts": [
                    {
                        "event": "plan-approved",
                        "approvers": [{"login": hostile, "comment_url": "javascript:alert(1)"}],
                    }
                ],
                "grants": [{"id": "gr_1", "approver": hostile, "evidence_url": "data:text/html,x"}],
            }
        ).encode(),
        "plan.json": json.dumps(
            {
                "hash": "ab" * 32,
                "statements": [
                    {
                        "index": 0,
                        "text": "DROP TABLE t",
                        "fingerprint": "f",
                        "needs_approval": True,
                        "findings": [{"rule": "SO101", "name": "x", "message": hostile}],
                    }
                ],
            }
        ).encode(),
    }
    read = parse(render_report(files))
    assert "img" not in read.tags and read.external == [] and read.hrefs == []
    assert hostile in read.text("identity") and hostile in read.text("approvals")
    assert hostile in read.text("plan")
