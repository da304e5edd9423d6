"""Inline ``-- signoff: allow SO123 because <reason>`` directives.

A directive downgrades one finding of the statement it leads to advisory and is
shown in the plan with its reason: never silently. It must sit in the
statement's text (a comment before it or inside it), so it is covered by the
statement's sha256 and by the plan hash a reviewer approves. A directive that
cannot be read, names no finding of its statement, or waives a category the
policy keeps for reviewers is itself reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from runner.plan.model import Allowance, Decision, Finding
from runner.plan.policy import Policy
from runner.plan.rules.base import CATALOGUE, Rule
from runner.plan.statements import Comment, RawStatement

PREFIX = "signoff:"
DIRECTIVE_RULE = "SO004"


@dataclass(frozen=True)
class Directive:
    rules: tuple[str, ...]
    reason: str
    line: int


def parse(comment: Comment) -> Directive | str | None:
    """A directive, an error message for a malformed one, or None for other comments."""
    text = comment.text.strip()
    if not text.lower().startswith(PREFIX):
        return None
    body = text[len(PREFIX) :].split()
    usage = "write it as '-- signoff: allow SO123 because <reason>'"
    if not body or body[0].lower() != "allow":
        return f"unknown signoff directive {text!r}; {usage}"
    lowered = [w.lower() for w in body]
    if "because" not in lowered:
        return f"signoff allow without a reason; {usage}"
    cut = lowered.index("because")
    ids = tuple(i.strip(",").upper() for i in body[1:cut] if i.strip(","))
    reason = " ".join(body[cut + 1 :])
    if not ids or not reason:
        return f"signoff allow needs rule ids and a reason; {usage}"
    unknown = [i for i in ids if i not in CATALOGUE]
    if unknown:
        return f"signoff allow names unknown rule {', '.join(unknown)}; see `signoff rules`"
    if not comment.in_text:
        return (
            "signoff allow after the statement's semicolon is not part of the reviewed text; "
            "put it on the line before the statement"
        )
    return Directive(ids, reason, comment.line)


def apply(raw: RawStatement, hits: Iterable[tuple[Rule, str]], policy: Policy) -> list[Finding]:
    findings = [policy.finding(rule, message) for rule, message in hits]
    problems: list[str] = []
    for comment in raw.comments:
        parsed = parse(comment)
        if parsed is None:
            continue
        if isinstance(parsed, str):
            problems.append(f"line {comment.line}: {parsed}")
            continue
        for rule_id in parsed.rules:
            matched = [i for i, f in enumerate(findings) if f.rule == rule_id]
            if not matched:
                problems.append(
                    f"line {parsed.line}: signoff allow {rule_id} "
                    "matches no finding of this statement"
                )
            for index in matched:
                findings[index] = _allow(findings[index], parsed, policy)
    directive_rule = CATALOGUE[DIRECTIVE_RULE]
    findings.extend(policy.finding(directive_rule, message) for message in problems)
    return findings


def _allow(finding: Finding, directive: Directive, policy: Policy) -> Finding:
    if finding.decision is Decision.ADVISORY:
        return replace(finding, allowed=Allowance(directive.reason, directive.line))
    if not policy.may_allow_inline(finding.category):
        return replace(
            finding,
            note=(
                f"inline allow refused: {finding.category.value} findings need a reviewer's "
                "approval (inline_allow in the signoff configuration decides this)"
            ),
        )
    return replace(
        finding,
        decision=Decision.ADVISORY,
        allowed=Allowance(directive.reason, directive.line),
    )
