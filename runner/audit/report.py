"""The auditor's report: ``report.html``, one self-contained page per audit bundle.

One HTML file, no external assets (inline CSS, an inline SVG timeline, no
JavaScript), readable at A4 width and in print: who ran the session (the identity
claims the gateway verified), the approvals with their links, the plan with its
findings, the statements that ran (tag or SQLSTATE, rows, duration, decision,
grant), the statements that were refused and why, the masked columns, the
verification verdict, a timeline picture, and the evidence files' digests.
Every value on the page is escaped: statement texts, claims and URLs come from
clients and code hosts, and only ``http(s)`` URLs become links.

Where the verdict comes from (and why the page itself never claims one)
------------------------------------------------------------------------
``report.html`` is a *view*: it is outside the gateway's signature (the
attestation covers session.jsonl, plan.json, approvals.json and identity.json),
and the manifest listing its digest is not signed either. Anyone holding the
bundle could rewrite both, so no sentence on a page written into the bundle can
vouch for the bundle; and the page is written by the CI runner, the one party the
auditor should not have to trust, before the bundle is closed. So there are two
renderings of the same page, from the same files:

* **In the bundle** (``render_report(files)``, the ``build_bundle`` hook): the
  verdict section says in red "not verified by this page", shows what the runner
  could check without the key (do the files match the digests the envelope
  names; that is consistency, not authenticity), lists the signed digests, the
  chain head and the key id the envelope names, and gives the commands that do
  verify: ``signoff audit verify BUNDLE --public-key GATEWAY.pub`` (or OpenSSL,
  see ``runner.audit.offline``).
* **Viewed** (``signoff audit report BUNDLE --public-key GATEWAY.pub``): the
  auditor's own copy of Signoff verifies the bundle with the auditor's copy of the
  gateway's key (``verify_loaded``, every check) at the moment of viewing and
  renders the page from the files it just verified, the checks and the verdict
  at the top, with the time and key id they were computed with. This is the
  rendering to trust; when a check fails, the page says NOT VERIFIED first and
  everything below is "what the bundle claims".
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from runner.audit.attestation import ATTESTED_FILES, CHAIN_HEAD_SUBJECT, sha256_hex_bytes
from runner.audit.bundle import ATTESTATION, MANIFEST, BundleError, attested_statement
from runner.audit.offline import VerifyReport
from runner.audit.readonly import is_housekeeping
from runner.audit.replay import (
    SessionView,
    outcome_text,
    parse_ts,
    session_view,
    sql_headline,
)
from runner.audit.timeline import timeline_svg

REPORT_MARK = "signoff-auditor-report"
MAX_TEXT_CHARS = 4000  # a statement's text shown on the page; the whole is in session.jsonl


def e(value: Any) -> str:
    """Escaped text of any value (None as an em dash)."""
    return "\u2014" if value is None or value == "" else html.escape(str(value), quote=True)


def link(url: Any, text: str | None = None) -> str:
    """A link for an http(s) URL, escaped text for anything else (no javascript:)."""
    if not isinstance(url, str) or not url:
        return e(None)
    if url.startswith(("https://", "http://")):
        return f'<a href="{e(url)}">{e(text or url)}</a>'
    return e(url)


def _short_url(url: Any) -> str:
    """The tail of a URL (``pull/42#issuecomment-7``): narrow cells link with it."""
    text = str(url or "")
    tail = "/".join(text.split("/")[-2:])
    return tail if len(tail) < len(text) else text


def render_report(
    files: Mapping[str, bytes],
    *,
    verification: VerifyReport | None = None,
    key_id: str | None = None,
    viewed_at: datetime | None = None,
) -> bytes:
    """The page for a bundle's files (name -> bytes). Without ``verification`` it is
    the in-bundle rendering (see the module doc); with it, the viewed one. Never
    raises on odd input: a failed run's bundle gets its report too."""
    view = session_view(files)
    sections = [
        _verdict(files, view, verification, key_id, viewed_at),
        _identity(view),
        _approvals(view),
        _timeline_section(view),
        _plan(view),
        _executed(view),
        _refused(view),
        _masked(view),
        _evidence(files, view),
    ]
    title = f"Signoff audit report: {view.session_id or 'session'} on {view.database or '?'}"
    summary = _summary(files, view)
    page = f"""<!doctype html>
<!-- {REPORT_MARK}: rendered by runner/audit/report.py -->
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_CSS}</style>
</head><body><main>
<header><h1>Signoff audit report</h1>
<p class="sub">Session <code>{e(view.session_id)}</code> on database <code>{e(view.database)}</code>
&middot; plan <code>{e((view.plan_hash or "")[:12] or None)}</code></p>
{summary}</header>
{"".join(sections)}
<footer>Rendered by Signoff from the bundle's files. The evidence is session.jsonl,
plan.json, approvals.json and identity.json, signed by the gateway in
attestation.dsse.json; this page is a view of them.</footer>
</main></body></html>
"""
    return page.encode("utf-8")


# -- sections --------------------------------------------------------------------------------


def _summary(files: Mapping[str, bytes], view: SessionView) -> str:
    who = view.principal.get("actor") or view.principal.get("sub")
    approvers = sorted({str(g.get("approver")) for g in view.grants if g.get("approver")})
    start = view.start()
    items = [
        ("ran by", e(who)),
        ("approved by", e(", ".join(approvers) or "nobody")),
        ("statements run", e(len(view.executed))),
        ("refused", e(len(view.refused))),
        ("when", e(start.strftime("%Y-%m-%d %H:%M:%S UTC") if start else None)),
        ("signed", "yes" if ATTESTATION in files else '<span class="bad">no (unsigned)</span>'),
    ]
    cells = "".join(f"<div><span>{k}</span><strong>{v}</strong></div>" for k, v in items)
    return f'<div class="summary">{cells}</div>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{e(title)}</h2>\n{body}\n</section>\n'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table of already-escaped cells."""
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _pairs(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _verdict(
    files: Mapping[str, bytes],
    view: SessionView,
    verification: VerifyReport | None,
    key_id: str | None,
    viewed_at: datetime | None,
) -> str:
    if verification is not None:
        when = (viewed_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
        key_text = (
            f"the gateway public key {e(key_id[:16])}\u2026" if key_id else "the public key given"
        )
        cls = "verdict ok" if verification.ok else "verdict bad"
        word = "VERIFIED" if verification.ok else "NOT VERIFIED"
        rows = [
            [
                f'<span class="{"ok" if c.ok else "bad"}">{"ok" if c.ok else "FAIL"}</span>',
                e(c.name),
                e(c.detail),
            ]
            for c in verification.checks
        ]
        caution = (
            ""
            if verification.ok
            else "<p><strong>Everything below is what the bundle claims, not evidence.</strong></p>"
        )
        body = (
            f'<div class="{cls}"><strong>{word}:</strong> {e(_verdict_detail(verification))}</div>'
            f"<p>Computed when this page was rendered, {e(when)}, by <code>signoff audit "
            f"report</code> with {key_text}, "
            f"from the same files shown below.</p>{caution}"
            + _table(["", "check", "detail"], rows, "checks")
        )
        return _section("verdict", "Verification verdict", body)
    prechecks = _prechecks(files)
    body = (
        '<div class="verdict pending"><strong>NOT VERIFIED BY THIS PAGE</strong> \u2014 '
        "this page was written by the CI runner into the bundle and is not signed; it cannot "
        "vouch for the bundle. Verify it yourself, offline, with the gateway's public key:</div>"
        '<pre class="cmd">signoff audit verify BUNDLE.tar.gz --public-key GATEWAY.pub\n'
        "signoff audit report BUNDLE.tar.gz --public-key GATEWAY.pub --out report.html</pre>"
        "<p>The second renders this page again with every check's result and the verdict, "
        "computed with your key when you view it. Without Signoff, OpenSSL can check the "
        "signature (README, \u201cChecking the signature with standard tools\u201d).</p>"
        "<p>What the runner could check when it wrote this page, without the key "
        "(consistency, not authenticity):</p>"
        + _table(["", "check", "detail"], prechecks, "checks")
    )
    if view.problems:
        body += (
            '<p class="bad">Problems reading the bundle: ' + e("; ".join(view.problems)) + "</p>"
        )
    return _section("verdict", "Verification verdict", body)


def _verdict_detail(verification: VerifyReport) -> str:
    if verification.ok:
        return f"all {len(verification.checks)} checks passed ({verification.source})"
    names = ", ".join(c.name for c in verification.failed)
    return f"{len(verification.failed)} check(s) failed: {names} ({verification.source})"


def _prechecks(files: Mapping[str, bytes]) -> list[list[str]]:
    envelope = files.get(ATTESTATION)
    if envelope is None:
        return [['<span class="bad">FAIL</span>', "signature", "unsigned bundle: no attestation"]]
    try:
        statement = attested_statement(json.loads(envelope))
    except (BundleError, ValueError) as error:
        return [['<span class="bad">FAIL</span>', "attestation", e(error)]]
    subjects = _subjects(statement)
    rows: list[list[str]] = []
    for name in ATTESTED_FILES:
        signed = subjects.get(name)
        actual = sha256_hex_bytes(files[name]) if name in files else None
        same = signed is not None and signed == actual
        rows.append(
            [
                f'<span class="{"ok" if same else "bad"}">{"match" if same else "DIFFER"}</span>',
                e(name),
                f"sha256 <code>{e(actual)}</code>"
                if same
                else f"file <code>{e(actual)}</code>, the envelope names <code>{e(signed)}</code>",
            ]
        )
    return rows


def _subjects(statement: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for subject in statement.get("subject") or []:
        if isinstance(subject, Mapping) and isinstance(subject.get("digest"), Mapping):
            out[str(subject.get("name"))] = str(subject["digest"].get("sha256"))
    return out


def _identity(view: SessionView) -> str:
    p, c = view.principal, view.claims
    if not p and not c:
        return _section(
            "identity", "Who ran it", '<p class="bad">identity.json names no principal.</p>'
        )
    rows = [
        ("actor", e(p.get("actor") or c.get("actor"))),
        ("repository", e(p.get("repository") or c.get("repository"))),
        ("ref", e(p.get("ref") or c.get("ref"))),
        ("commit sha", f"<code>{e(p.get('sha') or c.get('sha'))}</code>"),
        ("run id", e(p.get("run_id") or c.get("run_id"))),
        ("workflow", e(p.get("workflow") or c.get("workflow_ref") or c.get("workflow"))),
        ("issuer", e(p.get("iss") or c.get("iss"))),
        ("subject", e(p.get("sub") or c.get("sub"))),
        ("environment", e(c.get("environment"))),
        ("role", e(view.identity.get("role"))),
        ("session created", e(view.identity.get("created_at"))),
        ("verified by", e(view.identity.get("verified_by"))),
    ]
    extra = sorted(k for k in c if k not in {"actor", "repository", "ref", "sha", "iss", "sub"})
    claims = ", ".join(f"{e(k)}={e(c[k])}" for k in extra)
    body = (
        "<p>The identity claims the gateway verified (OIDC token) when the session was created.</p>"
        + _pairs(rows)
        + (f'<p class="small">All other claims: {claims}</p>' if claims else "")
    )
    return _section("identity", "Who ran it", body)


def _approvals(view: SessionView) -> str:
    rows = []
    for verdict in view.verdicts:
        approvers = verdict.get("approvers") or []
        review = verdict.get("review") if isinstance(verdict.get("review"), Mapping) else {}
        assert isinstance(review, Mapping)
        where = f"{review.get('repository') or ''} #{review.get('number') or ''}".strip(" #")
        for approver in approvers or [{}]:
            login = approver.get("login") if isinstance(approver, Mapping) else approver
            url = approver.get("comment_url") if isinstance(approver, Mapping) else None
            rows.append(
                [
                    e(verdict.get("event")),
                    f"<strong>{e(login)}</strong>",
                    link(url),
                    e(verdict.get("ts")),
                    e(where or None),
                    e(verdict.get("reason")),
                ]
            )
    grants = [
        [
            f"<code>{e(g.get('id'))}</code>",
            f"<strong>{e(g.get('approver'))}</strong>",
            link(g.get("evidence_url")),
            e(g.get("ts")),
            f"<code>{e(str(g.get('fingerprint') or '')[:16] or None)}</code>",
            e(_statement_for(view, g.get("fingerprint"))),
        ]
        for g in view.grants
    ]
    body = (
        _table(["verdict", "approver", "comment", "when", "review", "reason"], rows)
        if rows
        else "<p>No approval verdicts were recorded.</p>"
    )
    body += "<h3>Grants the gateway recorded</h3>" + (
        _table(["grant", "approver", "evidence", "when", "fingerprint", "statement"], grants)
        if grants
        else "<p>No grants: nothing ran on an approval.</p>"
    )
    return _section("approvals", "Approvals", body)


def _statement_for(view: SessionView, fingerprint: Any) -> str | None:
    for statement in (view.plan or {}).get("statements") or []:
        if isinstance(statement, Mapping) and statement.get("fingerprint") == fingerprint:
            return sql_headline(str(statement.get("text", "")), 80)
    return None


def _code(text: Any) -> str:
    value = str(text or "")
    if len(value) > MAX_TEXT_CHARS:
        more = len(value) - MAX_TEXT_CHARS
        value = value[:MAX_TEXT_CHARS]
        note = f'<p class="small">\u2026 {more} more characters in session.jsonl</p>'
        return f"<pre>{e(value)}</pre>{note}"
    return f"<pre>{e(value)}</pre>"


def _plan(view: SessionView) -> str:
    plan = view.plan
    if plan is None:
        return _section("plan", "The plan", "<p>The bundle holds no plan.</p>")
    ran = {str(r.get("fingerprint")): r for r in view.executed}
    refused = {str(r.get("fingerprint")) for r in view.refused}
    rows = []
    for statement in plan.get("statements") or []:
        if not isinstance(statement, Mapping):
            continue
        findings = "".join(
            f"<li><code>{e(f.get('rule'))}</code> {e(f.get('name'))}: {e(f.get('message'))} "
            f"<em>({e(f.get('decision'))})</em></li>"
            for f in statement.get("findings") or []
            if isinstance(f, Mapping)
        )
        fingerprint = str(statement.get("fingerprint"))
        record = ran.get(fingerprint)
        if record is not None:
            status = f"ran: {e(outcome_text(record))}"
        elif fingerprint in refused:
            status = '<span class="bad">refused</span>'
        else:
            status = "not run"
        decision = "needs approval" if statement.get("needs_approval") else "allowed"
        rows.append(
            [
                e(statement.get("index")),
                _code(statement.get("text")),
                f"<ul>{findings}</ul>" if findings else "none",
                e(decision),
                status,
            ]
        )
    revisions = ", ".join(
        f"{e(r.get('id'))} ({e(r.get('message'))})"
        for r in plan.get("revisions") or []
        if isinstance(r, Mapping)
    )
    meta = _pairs(
        [
            ("plan hash", f"<code>{e(plan.get('hash'))}</code>"),
            ("revisions", revisions or e(None)),
            ("from revision(s)", e(", ".join(str(r) for r in plan.get("from_revisions") or []))),
            ("ruleset", e(plan.get("ruleset"))),
        ]
    )
    table = _table(
        ["#", "statement", "findings (rule, message, decision)", "decision", "in the session"],
        rows,
        "plan",
    )
    return _section("plan", "The plan", meta + table)


def _executed(view: SessionView) -> str:
    start = view.start()
    planned = {
        str(s.get("fingerprint"))
        for s in (view.plan or {}).get("statements") or []
        if isinstance(s, Mapping)
    }
    rows = []
    for record in view.executed:
        ts = parse_ts(record.get("ts"))
        offset = f"+{(ts - start).total_seconds():.3f}s" if ts and start else None
        text = str(record.get("text", ""))
        if str(record.get("fingerprint")) in planned:
            badge = '<span class="badge plan">plan</span>'
        elif is_housekeeping(text):
            badge = '<span class="badge">housekeeping</span>'
        else:
            badge = '<span class="badge bad">outside the plan</span>'
        outcome = record.get("outcome")
        status = str(record.get("status") or "")
        failed = status != "completed"
        grant = record.get("grant") if isinstance(record.get("grant"), Mapping) else None
        assert grant is None or isinstance(grant, Mapping)
        rows.append(
            [
                e(record.get("seq")),
                e(offset),
                badge + _code(text),
                f'<span class="{"bad" if failed else ""}">'
                f"{e(outcome if outcome is not None else status)}</span>"
                + (f" ({e(status)})" if failed and status != outcome else ""),
                e(record.get("rows")),
                e(
                    f"{record['duration_ms']:.3f} ms"
                    if isinstance(record.get("duration_ms"), int | float)
                    else None
                ),
                e(record.get("decision")),
                (
                    f"<strong>{e(grant.get('approver'))}</strong><br>"
                    f"{link(grant.get('evidence_url'), _short_url(grant.get('evidence_url')))}"
                    if grant
                    else e(None)
                ),
            ]
        )
    body = (
        _table(
            [
                "seq",
                "time",
                "statement",
                "outcome (tag or SQLSTATE)",
                "rows",
                "duration",
                "decision",
                "grant",
            ],
            rows,
            "stmts",
        )
        if rows
        else "<p>No statement reached the database.</p>"
    )
    return _section("statements", "Statements executed", body)


def _refused(view: SessionView) -> str:
    rows = [
        [
            e(r.get("seq")),
            _code(r.get("text")),
            e(r.get("reason") or "refused by the gateway"),
            e(
                ", ".join(
                    f"{f.get('rule')}: {f.get('message')}"
                    for f in r.get("findings") or []
                    if isinstance(f, Mapping)
                )
                or None
            ),
            e(r.get("outcome")),
        ]
        for r in view.refused
    ]
    body = (
        _table(["seq", "statement", "why", "findings", "SQLSTATE"], rows, "refused")
        if rows
        else "<p>None: the gateway refused no statement in this session.</p>"
    )
    return _section("refused", "Refused statements", body)


def _masked(view: SessionView) -> str:
    columns = view.masked_columns
    body = (
        "<ul>" + "".join(f"<li><code>{e(c)}</code></li>" for c in columns) + "</ul>"
        if columns
        else "<p><strong>none</strong>: no column was masked in any result of this session.</p>"
    )
    return _section("masked", "Masked columns", body)


def _evidence(files: Mapping[str, bytes], view: SessionView) -> str:
    statement: Mapping[str, Any] = {}
    keyid = None
    if ATTESTATION in files:
        try:
            envelope = json.loads(files[ATTESTATION])
            statement = attested_statement(envelope)
            keyid = next((s.get("keyid") for s in envelope.get("signatures") or []), None)
        except (BundleError, ValueError, AttributeError):
            statement = {}
    rows = [
        [e(name), f"<code>{e(sha256_hex_bytes(files[name]))}</code>", e(len(files[name]))]
        for name in sorted(files)
        if name not in (MANIFEST, "report.html")
    ]
    facts = _pairs(
        [
            ("plan hash", f"<code>{e(view.plan_hash)}</code>"),
            (
                "signed chain head",
                f"<code>{e(_subjects(statement).get(CHAIN_HEAD_SUBJECT))}</code>",
            ),
            ("signing key id (as the envelope names it)", f"<code>{e(keyid)}</code>"),
        ]
    )
    body = (
        facts + "<p>The files as this page read them (compare with <code>sha256sum</code> and "
        "manifest.json):</p>" + _table(["file", "sha256", "bytes"], rows, "digests")
    )
    return _section("evidence", "Evidence files", body)


def _timeline_section(view: SessionView) -> str:
    return _section(
        "timeline",
        "Timeline",
        '<div class="timeline">' + timeline_svg(view) + "</div>"
        '<p class="small">Each bar starts when the gateway recorded the statement and lasts its '
        "recorded duration (at least a hairline). Hover a mark for its statement.</p>",
    )


_CSS = """
@page { size: A4; margin: 12mm; }
* { box-sizing: border-box; }
body { margin: 0; background: #f7fafc; color: #1a202c;
  font: 13px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 186mm; margin: 0 auto; padding: 16px 20px; background: #fff; }
header h1 { margin: 0 0 4px; font-size: 22px; }
.sub { margin: 0 0 10px; color: #4a5568; }
h2 { font-size: 16px; border-bottom: 2px solid #2d3748; padding-bottom: 2px; margin: 22px 0 8px; }
h3 { font-size: 13px; margin: 12px 0 6px; }
.summary { display: flex; flex-wrap: wrap; gap: 6px; }
.summary div { border: 1px solid #cbd5e0; border-radius: 4px; padding: 4px 8px; flex: 1 1 auto; }
.summary span { display: block; font-size: 10px; color: #4a5568; text-transform: uppercase; }
table { border-collapse: collapse; width: 100%; table-layout: auto; margin: 4px 0 8px; }
th, td { border: 1px solid #e2e8f0; padding: 3px 5px; vertical-align: top; text-align: left;
  overflow-wrap: break-word; }
td a, td code { overflow-wrap: anywhere; }
table.checks td:first-child { white-space: nowrap; width: 3.5em; }
thead th { background: #edf2f7; font-size: 11px; }
table.kv th { width: 28%; background: #f7fafc; font-weight: 600; }
pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere;
  font: 11px/1.35 "DejaVu Sans Mono", Menlo, Consolas, monospace; }
pre.cmd { background: #1a202c; color: #f7fafc; padding: 6px 8px; border-radius: 4px;
  margin: 6px 0; }
code { font: 11px "DejaVu Sans Mono", Menlo, Consolas, monospace; overflow-wrap: anywhere; }
ul { margin: 0; padding-left: 16px; }
a { color: #2b6cb0; overflow-wrap: anywhere; }
.small { font-size: 11px; color: #4a5568; }
.ok { color: #276749; font-weight: 700; }
.bad { color: #c53030; font-weight: 700; }
.verdict { padding: 8px 10px; border-radius: 4px; margin: 4px 0 8px; border: 2px solid; }
.verdict.ok { background: #f0fff4; border-color: #2f855a; color: #22543d; }
.verdict.bad { background: #fff5f5; border-color: #c53030; color: #742a2a; }
.verdict.pending { background: #fffaf0; border-color: #c05621; color: #7b341e; }
.badge { display: inline-block; font-size: 9px; padding: 0 4px; border-radius: 3px;
  background: #e2e8f0; color: #2d3748; margin-bottom: 2px; }
.badge.plan { background: #bee3f8; color: #2a4365; }
.badge.bad { background: #fed7d7; color: #742a2a; }
table.stmts td:nth-child(3) { width: 44%; }
table.stmts td:nth-child(2), table.stmts td:nth-child(6) { white-space: nowrap; }
table.stmts td:nth-child(8) { min-width: 9em; }
table.refused td:nth-child(2) { width: 30%; }
table.refused td:nth-child(3) { width: 40%; }
table.refused td:nth-child(3), table.refused td:nth-child(4), table.checks td:nth-child(3) {
  overflow-wrap: anywhere; }
.timeline { border: 1px solid #e2e8f0; padding: 4px; }
footer { margin-top: 20px; font-size: 11px; color: #4a5568; border-top: 1px solid #e2e8f0;
  padding-top: 6px; }
@media print { body { background: #fff; } main { max-width: none; padding: 0; } }
"""

__all__ = ["REPORT_MARK", "link", "render_report"]
