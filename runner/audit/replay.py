"""Session replay: an audit bundle's session told as a timeline, line by line.

``signoff audit replay BUNDLE [--pace real|fast]`` prints who ran the session
(the identity claims the gateway verified), then every event in the order the
gateway's chain recorded it: the connections, each statement that ran (how long,
what came back: command tag or SQLSTATE, rows, masked columns, the grant it ran
on), each statement that was refused and why, the plan's submission and its
approvals (approver, comment URL). ``--pace real`` sleeps the recorded gap before
each line, at most ``MAX_GAP_SECONDS`` per gap, so a session plays back as it
happened without a long idle wait stalling the screen.

What a bundle says is not evidence until it is verified: replay reads the files
as they are and says so in its header unless given the gateway's public key, in
which case it verifies first (``runner.audit.offline``) and prints the verdict.

The session view (``SessionView``: identity, plan, merged records, events) is
shared with the auditor's report (``runner.audit.report``), so the page and the
terminal tell the same story from the same reading of the files.

Statement texts, claims and URLs come from the session's clients and code host:
untrusted. Terminal output passes them through ``printable`` (control
characters, ANSI escapes included, are shown escaped, never interpreted).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner.audit.bundle import Bundle, BundleError, session_entries
from runner.audit.records import merge_records

MAX_GAP_SECONDS = 2.0  # --pace real: the longest pause between two lines
PACES = ("fast", "real")


# -- the session as read from the bundle's files ---------------------------------------------


@dataclass(frozen=True)
class Event:
    """One moment of the session: a statement, a refusal, an approval, a session event."""

    ts: datetime | None
    kind: str  # statement | refused | approval | grant | session
    label: str  # the column shown in replay: "ran", "REFUSED", "approved", ...
    text: str  # the line's rest, plain text (not yet made printable)
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class SessionView:
    """What the bundle's files say about its session (unverified: see the module doc)."""

    session_id: str | None = None
    database: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    approvals: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files that did not read
    signed: bool = False  # an attestation is in the bundle (not: it verifies)
    unsigned_reason: str | None = None  # the manifest's, when it has one

    @property
    def principal(self) -> dict[str, Any]:
        value = self.identity.get("principal")
        return dict(value) if isinstance(value, Mapping) else {}

    @property
    def claims(self) -> dict[str, Any]:
        value = self.identity.get("claims")
        return dict(value) if isinstance(value, Mapping) else {}

    @property
    def plan_hash(self) -> str | None:
        value = (self.plan or {}).get("hash") or self.approvals.get("plan_hash")
        return None if value is None else str(value)

    @property
    def statements(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == "statement"]

    @property
    def executed(self) -> list[dict[str, Any]]:
        """Statements the gateway let through (whatever came back)."""
        return [r for r in self.statements if r.get("decision") != "blocked"]

    @property
    def refused(self) -> list[dict[str, Any]]:
        return [r for r in self.statements if r.get("decision") == "blocked"]

    @property
    def grants(self) -> list[dict[str, Any]]:
        value = self.approvals.get("grants")
        return [dict(g) for g in value if isinstance(g, Mapping)] if isinstance(value, list) else []

    @property
    def verdicts(self) -> list[dict[str, Any]]:
        value = self.approvals.get("verdicts")
        return [dict(v) for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []

    @property
    def masked_columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for record in self.statements:
            for column in record.get("masked_columns") or []:
                seen.setdefault(masked_label(column), None)
        return list(seen)

    def start(self) -> datetime | None:
        times = [t for t in (parse_ts(r.get("ts")) for r in self.records) if t is not None]
        return min(times) if times else None

    def events(self) -> list[Event]:
        return [e for e in (_event(r) for r in self.records) if e is not None]


def _json(files: Mapping[str, bytes], name: str, problems: list[str]) -> Any:
    if name not in files:
        return None
    try:
        return json.loads(files[name])
    except ValueError:
        problems.append(f"{name} is not JSON")
        return None


def session_view(files: Mapping[str, bytes]) -> SessionView:
    """The view of a bundle's files (name -> bytes). Never raises: what does not read
    is listed in ``problems`` (a broken bundle still gets its report)."""
    view = SessionView()
    identity = _json(files, "identity.json", view.problems)
    plan = _json(files, "plan.json", view.problems)
    approvals = _json(files, "approvals.json", view.problems)
    view.identity = dict(identity) if isinstance(identity, Mapping) else {}
    view.plan = dict(plan) if isinstance(plan, Mapping) else None
    view.approvals = dict(approvals) if isinstance(approvals, Mapping) else {}
    try:
        entries = session_entries(Bundle(dict(files)))
    except BundleError as error:
        view.problems.append(str(error))
        entries = []
    view.records = merge_records(entries)
    view.session_id = _opt(view.identity.get("session_id")) or next(
        (_opt(r.get("session_id")) for r in view.records if r.get("session_id")), None
    )
    view.database = _opt(view.identity.get("database")) or _opt((view.plan or {}).get("target"))
    view.signed = "attestation.dsse.json" in files
    manifest = _json(files, "manifest.json", view.problems)
    if isinstance(manifest, Mapping):
        view.unsigned_reason = _opt(manifest.get("unsigned_reason"))
    return view


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# -- lines -----------------------------------------------------------------------------------


def sql_headline(text: str, limit: int = 100) -> str:
    """A statement's first line of SQL (leading comments skipped: alembic's
    "-- Running upgrade" would hide the DROP), whitespace folded, bounded."""
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("--")
    ]
    first = " ".join((lines[0] if lines else text).split())
    return first if len(first) <= limit else first[: limit - 3] + "..."


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters shown as escapes."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def masked_label(column: Any) -> str:
    """A masked column as the gateway records it (runner.gateway.masking): the
    column, what it was derived from, and the rule that masked it; never a value."""
    if not isinstance(column, Mapping):
        return str(column)
    output = str(column.get("output") or "")
    source = str(column.get("column") or "")
    label = source if not output or source.endswith("." + output) else f"{output} <- {source}"
    return f"{label} ({column.get('rule')}: {column.get('how')})"


def outcome_text(record: Mapping[str, Any]) -> str:
    """What came back: tag or SQLSTATE, rows, duration, masked columns."""
    status = str(record.get("status") or "")
    outcome = record.get("outcome")
    parts = [str(outcome) if outcome is not None else status or "no outcome"]
    if status and status not in ("completed",) and str(outcome) != status:
        parts[0] += f" ({status})"
    rows = record.get("rows")
    if rows is not None:
        parts.append(f"{rows} row{'s' if rows != 1 else ''}")
    duration = record.get("duration_ms")
    if isinstance(duration, int | float):
        parts.append(f"{duration:.3f} ms")
    masked = [masked_label(c) for c in record.get("masked_columns") or []]
    if masked:
        parts.append("masked " + ", ".join(masked))
    return ", ".join(parts)


def grant_text(record: Mapping[str, Any]) -> str:
    grant = record.get("grant")
    if not isinstance(grant, Mapping):
        return ""
    approver = grant.get("approver") or "?"
    evidence = grant.get("evidence_url")
    return f"grant {grant.get('id')} by {approver}" + (f" ({evidence})" if evidence else "")


def _approvers(verdict: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for approver in verdict.get("approvers") or []:
        if isinstance(approver, Mapping):
            out.append((str(approver.get("login")), _opt(approver.get("comment_url"))))
        else:
            out.append((str(approver), None))
    return out


def _event(record: Mapping[str, Any]) -> Event | None:
    ts = parse_ts(record.get("ts"))
    kind = record.get("kind")
    if kind == "statement":
        headline = sql_headline(str(record.get("text", "")))
        if record.get("decision") == "blocked":
            reason = record.get("reason") or "refused by the gateway"
            return Event(ts, "refused", "REFUSED", f"{headline} -- {reason}", record)
        grant = grant_text(record)
        label = "ran+grant" if record.get("decision") == "approved" else "ran"
        text = f"{headline} -> {outcome_text(record)}" + (f" [on {grant}]" if grant else "")
        return Event(ts, "statement", label, text, record)
    if kind == "grant":
        fingerprint = str(record.get("fingerprint") or "")[:12]
        evidence = record.get("evidence_url")
        text = (
            f"{record.get('approver')} approved statement {fingerprint} "
            f"(grant {record.get('grant')})"
        )
        return Event(ts, "grant", "grant", text + (f" {evidence}" if evidence else ""), record)
    if kind != "session":
        return None
    return _session_event(ts, record)


def _session_event(ts: datetime | None, record: Mapping[str, Any]) -> Event | None:
    event = str(record.get("event") or "")
    principal = record.get("principal") if isinstance(record.get("principal"), Mapping) else {}
    assert isinstance(principal, Mapping)
    short = str(record.get("plan_hash") or "")[:12]
    if event == "session-created":
        who = principal.get("actor") or principal.get("sub")
        return Event(
            ts, "session", "session", f"created for {who} ({principal.get('sub')})", record
        )
    if event == "authenticated":
        tls = "TLS" if record.get("tls") else "no TLS"
        client = record.get("application_name") or "a client"
        text = f"{client} from {record.get('peer')} ({record.get('method')}, {tls})"
        return Event(ts, "session", "connect", text, record)
    if event == "closed":
        return Event(
            ts, "session", "closed", str(record.get("reason") or "connection closed"), record
        )
    if event == "plan-submitted":
        need = len(record.get("needs_approval") or [])
        url = record.get("comment_url")
        text = f"plan {short} submitted, {need} statement(s) need approval" + (
            f"; review {url}" if url else ""
        )
        return Event(ts, "session", "plan", text, record)
    if event in ("plan-approved", "plan-rejected"):
        names = ", ".join(
            f"{login}" + (f" ({url})" if url else "") for login, url in _approvers(record)
        )
        verb = "approved" if event == "plan-approved" else "rejected"
        reason = record.get("reason")
        text = f"plan {short} {verb} by {names or 'nobody'}" + (f": {reason}" if reason else "")
        return Event(ts, "approval", verb, text, record)
    if event == "plan-reported":
        return Event(
            ts,
            "session",
            "reported",
            f"plan {short} {record.get('outcome')}: {record.get('completed')} completed, "
            f"{record.get('failed')} failed, {record.get('refused')} refused",
            record,
        )
    return Event(ts, "session", "event", event or "session event", record)


def header_lines(view: SessionView, source: str) -> list[str]:
    p, c = view.principal, view.claims
    start = view.start()
    plan_statements = (view.plan or {}).get("statements") or []
    needing = sum(1 for s in plan_statements if isinstance(s, Mapping) and s.get("needs_approval"))
    lines = [f"Session {view.session_id or '?'} on {view.database or '?'}: replay of {source}"]
    if not view.signed:
        why = f" ({view.unsigned_reason})" if view.unsigned_reason else ""
        lines.append(f"  UNSIGNED bundle{why}: not evidence of a session")
    if p or c:
        who = p.get("actor") or c.get("actor") or p.get("sub")
        lines += [
            f"  who:   {who} ({p.get('sub') or c.get('sub')}), verified by the gateway via "
            f"{p.get('iss') or c.get('iss')}",
            f"  what:  {p.get('repository') or c.get('repository')} @ "
            f"{p.get('ref') or c.get('ref')} {str(p.get('sha') or c.get('sha') or '')[:12]}, "
            f"run {p.get('run_id') or c.get('run_id')}, "
            f"workflow {p.get('workflow') or c.get('workflow')}",
        ]
    else:
        lines.append("  who:   no verified identity (identity.json names no principal)")
    lines += [
        f"  plan:  {(view.plan_hash or 'none')[:12]} ({len(plan_statements)} statement(s), "
        f"{needing} needing approval)",
        f"  when:  {start.strftime('%Y-%m-%d %H:%M:%S UTC') if start else 'unknown'}",
    ]
    lines += [f"  problem: {problem}" for problem in view.problems]
    return lines


def summary_lines(view: SessionView) -> list[str]:
    executed, refused = view.executed, view.refused
    failed = [r for r in executed if r.get("status") not in ("completed",)]
    approvers = sorted({str(g.get("approver")) for g in view.grants if g.get("approver")})
    masked = view.masked_columns
    return [
        f"summary: {len(executed)} statement(s) ran ({len(failed)} without completing), "
        f"{len(refused)} refused",
        f"approvals: {', '.join(approvers) if approvers else 'none'}",
        f"masked columns: {', '.join(masked) if masked else 'none'}",
    ]


def timeline(view: SessionView) -> list[tuple[datetime | None, str]]:
    """(time, line) for every event, in chain order, times relative to the first."""
    start = view.start()
    out: list[tuple[datetime | None, str]] = []
    for event in view.events():
        if event.ts is not None and start is not None:
            clock = event.ts.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
            offset = f"+{(event.ts - start).total_seconds():.3f}s"
        else:
            clock, offset = "??:??:??.???", "+?"
        out.append((event.ts, f"{clock} {offset:>9}  {event.label:<9} {event.text}"))
    return out


def play(
    lines: Iterable[tuple[datetime | None, str]],
    *,
    pace: str = "fast",
    echo: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Print the timeline; ``pace="real"`` sleeps each recorded gap (bounded).
    Returns the seconds slept (what a test can check without a stopwatch)."""
    if pace not in PACES:
        raise ValueError(f"--pace {pace!r}: use one of {', '.join(PACES)}")
    slept = 0.0
    previous: datetime | None = None
    for ts, line in lines:
        if pace == "real" and ts is not None and previous is not None:
            gap = min(max((ts - previous).total_seconds(), 0.0), MAX_GAP_SECONDS)
            if gap > 0:
                sleep(gap)
                slept += gap
        if ts is not None:
            previous = ts
        echo(printable(line))
    return slept


def replay_lines(view: SessionView, source: str) -> Sequence[str]:
    """The whole replay at once (fast), as plain printable lines."""
    lines = [printable(line) for line in header_lines(view, source)]
    lines.append("")
    lines += [printable(line) for _, line in timeline(view)]
    lines.append("")
    lines += summary_lines(view)
    return lines


__all__ = [
    "MAX_GAP_SECONDS",
    "Event",
    "SessionView",
    "header_lines",
    "parse_ts",
    "play",
    "printable",
    "replay_lines",
    "session_view",
    "sql_headline",
    "summary_lines",
    "timeline",
]
