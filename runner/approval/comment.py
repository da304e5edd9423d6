"""The sticky plan comment: the one comment per PR/MR and database that shows the
plan a reviewer approves, written by the gateway (the enforcement point) and
rewritten in place when the plan or the head commit changes.

Its first line is a hidden marker naming the database (how the gateway finds its
own comment again); the second hidden line records the head commit and the plan
hash it shows, which the approval rules read back from the code host: an
approval counts only after the plan for the current head was shown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from runner.approval.model import ApprovalComment, PlanComment
from runner.plan.diff import diff_plans, render_markdown, summary
from runner.plan.model import Plan, Statement
from runner.plan.render import finding_line, first_line
from runner.plan.rules import catalogue

# GitHub refuses comment bodies over 65536 characters; stay well under it.
MAX_BODY = 60_000
_MAX_STATEMENT_TEXT = 4_000
_DATABASE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_MARKER = re.compile(r"<!-- signoff:plan db=([A-Za-z0-9_.\-]+) -->")
_STATE = re.compile(r"<!-- signoff:state head=([0-9a-fA-F]{7,64}) plan=([0-9a-f]{64}) -->")


@dataclass(frozen=True)
class PlanMarker:
    database: str
    head_sha: str | None
    plan_hash: str | None


def marker(database: str) -> str:
    """The hidden first line that identifies the sticky comment of ``database``."""
    if _DATABASE_NAME.fullmatch(database) is None:
        raise ValueError(
            f"database name {database!r} cannot be put in a plan comment marker; "
            "use letters, digits, '_', '.', '-'"
        )
    return f"<!-- signoff:plan db={database} -->"


def status_marker(database: str) -> str:
    """The hidden first line of the gateway's status comment (what ran) of ``database``."""
    marker(database)  # the same rule for the name
    return f"<!-- signoff:status db={database} -->"


def require_status_marker(body: str, database: str) -> str:
    wanted = status_marker(database)
    if body.split("\n", 1)[0].strip() != wanted:
        raise ValueError(f"a status comment body must start with {wanted}")
    return wanted


def parse_marker(body: str) -> PlanMarker | None:
    """The marker of a plan comment body, or None when it is not one.

    Only the first line is a marker: a human quoting a plan comment elsewhere
    does not make their comment the sticky one.
    """
    lines = body.splitlines()
    if not lines:
        return None
    found = _MARKER.fullmatch(lines[0].strip())
    if found is None:
        return None
    state = _STATE.fullmatch(lines[1].strip()) if len(lines) > 1 else None
    return PlanMarker(
        database=found.group(1),
        head_sha=state.group(1).lower() if state else None,
        plan_hash=state.group(2) if state else None,
    )


def approve_line(plan: Plan) -> str:
    return f"/signoff approve {plan.short_hash}"


def plan_comment(
    plan: Plan,
    *,
    database: str,
    head_sha: str,
    previous: Plan | None = None,
    previous_approvers: Sequence[str] = (),
    who_may_approve: str = "a reviewer with write access who is not the author",
) -> str:
    """The markdown of the sticky comment for ``plan`` at ``head_sha``.

    ``previous`` is the plan last posted or approved on this review (the gateway
    keeps plans by hash; the old hash is in the comment's marker); when it is a
    different plan the comment says what changed, statement by statement, and
    that approvals of the earlier plan (by ``previous_approvers``) no longer count.
    """
    out = [
        marker(database),
        f"<!-- signoff:state head={head_sha.lower()} plan={plan.hash} -->",
        _title(plan, database),
        "",
        f"Head commit `{head_sha[:12]}` · {len(plan.revisions)} revision(s) · "
        f"{len(plan.statements)} statement(s) · rules `{plan.ruleset}`",
        "",
    ]
    if plan.needs_approval and not plan.denied:
        out += [
            f"To approve **this exact plan**, {who_may_approve} posts a new comment "
            "with this line on a line of its own (an edited comment does not count):",
            "",
            "```text",
            approve_line(plan),
            "```",
            "",
            "`/signoff reject` stops the deploy.",
            "",
        ]
    if previous is not None and previous.hash != plan.hash:
        out += _changed_section(previous, plan, previous_approvers)
    out += _revisions(plan)
    out += _statements_needing_approval(plan)
    out += _other_statements(plan)
    out += [
        "",
        f"Plan hash `{plan.short_hash}` (full: `{plan.hash}`)",
    ]
    return _fit("\n".join(out) + "\n", plan)


def _title(plan: Plan, database: str) -> str:
    if plan.denied:
        state = "⛔ denied: a finding blocks this plan as written"
    elif plan.needs_approval:
        count = sum(1 for s in plan.statements if s.needs_approval)
        state = f"🛑 needs approval ({count} statement{'s' if count != 1 else ''})"
    else:
        state = "✅ nothing needs approval"
    return f"### Signoff plan `{plan.short_hash}` for **{database}** — {state}"


def _changed_section(previous: Plan, plan: Plan, approvers: Sequence[str]) -> list[str]:
    changes = diff_plans(previous, plan)
    voided = (
        f"The approvals of `{previous.short_hash}` (by {', '.join(approvers)}) no longer count."
        if approvers
        else f"Approvals of `{previous.short_hash}` no longer count."
    )
    return [
        f"#### The plan changed since `{previous.short_hash}`",
        "",
        f"{summary(changes)}. {voided} Approve `{plan.short_hash}` to go on.",
        "",
        *render_markdown(changes),
        "",
    ]


def _revisions(plan: Plan) -> list[str]:
    if not plan.revisions:
        return []
    out = ["#### Revisions", ""]
    for revision in plan.revisions:
        count = len(plan.statements_of(revision.id))
        out.append(f"- `{revision.id}` {_inline(revision.message)} ({count} statement(s))")
    out.append("")
    return out


def _statements_needing_approval(plan: Plan) -> list[str]:
    flagged = [s for s in plan.statements if s.needs_approval or _denied(s)]
    if not flagged:
        return []
    rules = catalogue()
    explained: set[str] = set()  # each rule's rationale once: a plan may drop many tables
    out = ["#### Statements that need approval", ""]
    for statement in flagged:
        out.append(
            f"**#{statement.index}** `{statement.source}:{statement.line}` "
            f"(revision `{statement.revision or '-'}`, {statement.kind})"
        )
        out.append("")
        out += _code_block(statement.text)
        for finding in statement.findings:
            out.append(f"- {_inline(finding_line(finding))}")
            rule = rules.get(finding.rule)
            if rule is not None and rule.id not in explained:
                explained.add(rule.id)
                out.append(f"  - Why: {_inline(rule.rationale)}")
                out.append(f"  - Safer: {_inline(rule.safer)}")
        out.append("")
    return out


def _denied(statement: Statement) -> bool:
    return any(f.decision.value == "deny" for f in statement.findings)


def _other_statements(plan: Plan) -> list[str]:
    others = [s for s in plan.statements if not (s.needs_approval or _denied(s))]
    if not others:
        return []
    out = [f"<details><summary>{len(others)} other statement(s)</summary>", ""]
    for statement in others:
        notes = "; ".join(f.rule for f in statement.findings)
        suffix = f" ({notes})" if notes else ""
        out.append(f"- `#{statement.index}` {_inline(first_line(statement))}{suffix}")
    out += ["", "</details>"]
    return out


def _code_block(text: str) -> list[str]:
    if len(text) > _MAX_STATEMENT_TEXT:
        text = text[:_MAX_STATEMENT_TEXT] + "\n-- … (shortened here; the full text is in the plan)"
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}sql", text, fence]


def _inline(value: str) -> str:
    # Keep reviewers' view honest: no HTML from plan text (a revision message
    # could otherwise hide part of the comment with <!-- or <details>).
    return " ".join(value.replace("<", "&lt;").replace(">", "&gt;").split())


def _fit(body: str, plan: Plan) -> str:
    if len(body) <= MAX_BODY:
        return body
    cut = body[: MAX_BODY - 400]
    # Never cut inside a fenced block: the rest would render as code.
    if cut.count("```") % 2:
        cut = cut[: cut.rfind("```")]
    return (
        cut
        + "\n\n… the plan is too long for one comment; the full plan is in the job's output.\n\n"
        + f"Plan hash `{plan.short_hash}` (full: `{plan.hash}`)\n"
    )


def as_plan_comment(comment: ApprovalComment, database: str) -> PlanComment:
    """A comment of the gateway's as the plan comment, with the head and hash its
    hidden state line records."""
    found = parse_marker(comment.body)
    return PlanComment(
        id=comment.id,
        url=comment.url,
        author=comment.author,
        created_at=comment.created_at,
        updated_at=comment.updated_at,
        body=comment.body,
        database=database,
        head_sha=found.head_sha if found else None,
        plan_hash=found.plan_hash if found else None,
    )


def find_plan_comment(
    comments: Sequence[ApprovalComment], database: str, me: str
) -> PlanComment | None:
    """The first comment of ``database``'s plan written by ``me`` (the gateway's own
    login): anyone can post a body that starts with the marker, so only the
    gateway's own comment is the plan comment."""
    for comment in sorted(comments, key=lambda c: (c.created_at, c.id)):
        found = parse_marker(comment.body)
        if found is None or found.database != database:
            continue
        if comment.author.login.lower() == me.lower():
            return as_plan_comment(comment, database)
    return None
