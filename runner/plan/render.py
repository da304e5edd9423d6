"""Render a Plan: text (terminal), markdown (PR comment, job summary), JSON,
GitHub workflow annotations, and SARIF 2.1.0 (code scanning); the rule
catalogue (``signoff rules``), the dry-run report (``signoff dry-run``) and
the apply report.

Pure functions from a result to a string; nothing here prints or reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runner import __version__
from runner.plan.model import Decision, Finding, Plan, Severity, Statement
from runner.plan.rules import catalogue

if TYPE_CHECKING:
    from runner.apply import ApplyReport
    from runner.command import DryRunReport
    from runner.plan.rules.base import Example, Rule

FORMATS = ("text", "json", "markdown", "github", "sarif")
RULES_FORMATS = ("text", "markdown", "json")
DRY_RUN_FORMATS = ("text", "json")

_DECISION_LABEL = {
    Decision.DENY: "DENIED",
    Decision.NEEDS_APPROVAL: "needs approval",
    Decision.WARN: "warning",
    Decision.ADVISORY: "advisory",
}
_MARK = {
    Decision.DENY: "⛔",
    Decision.NEEDS_APPROVAL: "🛑",
    Decision.WARN: "⚠️",
    Decision.ADVISORY: "💬",
}


def render(plan: Plan, fmt: str, *, all_statements: bool = True) -> str:
    if fmt == "json":
        return plan.dumps()
    if fmt == "markdown":
        return markdown(plan)
    if fmt == "github":
        return github_annotations(plan)
    if fmt == "sarif":
        return json.dumps(sarif(plan), indent=2) + "\n"
    return text(plan, all_statements=all_statements)


def verdict(plan: Plan) -> str:
    if plan.denied:
        return "denied: a finding blocks this plan as written"
    if plan.needs_approval:
        count = sum(1 for s in plan.statements if s.needs_approval)
        return f"needs approval: {count} statement{'s' if count != 1 else ''}"
    return "nothing needs approval"


def first_line(statement: Statement) -> str:
    lines = [
        line.strip()
        for line in statement.text.splitlines()
        if line.strip() and not line.strip().startswith("--")
    ]
    first = lines[0] if lines else statement.text.strip()
    return first if len(first) <= 100 else first[:97] + "..."


def finding_line(finding: Finding) -> str:
    label = _DECISION_LABEL[finding.decision]
    line = f"{finding.rule} {finding.name} [{finding.category.value}, {label}]: {finding.message}"
    if finding.allowed is not None:
        line += f" (allowed inline: {finding.allowed.reason})"
    if finding.note:
        line += f" ({finding.note})"
    return line


def _basis(plan: Plan) -> str:
    basis = plan.basis
    if basis.server_version_num is None:
        version = (
            "server version unknown (assumed the worst; give --database-url or postgres_version)"
        )
    else:
        major, minor = divmod(basis.server_version_num, 10000)
        version = f"PostgreSQL {major}.{minor} ({basis.server_version_source})"
    return f"{version}; schema from {basis.schema_source}"


def text(plan: Plan, *, all_statements: bool = True) -> str:
    out = [
        f"Signoff plan {plan.short_hash} for {plan.target}: "
        f"{len(plan.revisions)} revision(s), {len(plan.statements)} statement(s) — {verdict(plan)}",
        f"  analysed for {_basis(plan)}; rules {plan.ruleset}",
    ]
    groups = _groups(plan)
    for title, statements in groups:
        shown = [s for s in statements if all_statements or s.findings]
        if not shown:
            continue
        if title:
            out.append("")
            out.append(title)
        for statement in shown:
            out.append(f"  {statement.source}:{statement.line}  {first_line(statement)}")
            out.extend(f"      {finding_line(f)}" for f in statement.findings)
    out.append("")
    out.append(_summary_line(plan))
    return "\n".join(out) + "\n"


def _summary_line(plan: Plan) -> str:
    counts: dict[str, int] = {}
    for _, finding in plan.findings:
        counts[finding.category.value] = counts.get(finding.category.value, 0) + 1
    if not counts:
        return f"No findings. Plan hash {plan.hash}"
    parts = ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
    return f"Findings: {parts}. Plan hash {plan.hash}"


def _groups(plan: Plan) -> list[tuple[str, list[Statement]]]:
    if not plan.revisions:
        return [("", list(plan.statements))]
    return [
        (f"revision {r.id} ({r.path}): {r.message}", plan.statements_of(r.id))
        for r in plan.revisions
    ]


def markdown(plan: Plan) -> str:
    """The PR/MR comment and job summary. The hidden marker lets a bot find its comment."""
    status = _MARK[Decision.NEEDS_APPROVAL] if plan.needs_approval else "✅"
    if plan.denied:
        status = _MARK[Decision.DENY]
    out = [
        f"<!-- signoff:plan {plan.hash} -->",
        f"### {status} Signoff plan `{plan.short_hash}` — {verdict(plan)}",
        "",
        f"Target **{plan.target}** · {len(plan.revisions)} revision(s) · "
        f"{len(plan.statements)} statement(s) · rules `{plan.ruleset}` · {_basis(plan)}",
        "",
    ]
    if plan.needs_approval and not plan.denied:
        out += [
            "A reviewer with write access (not the author) approves **this exact plan** "
            "with a comment:",
            "",
            f"    /signoff approve {plan.short_hash}",
            "",
        ]
    out += ["| revision | statements | findings | needs approval |", "|---|---|---|---|"]
    for title, statements in _groups(plan):
        name = title.split(" (")[0].removeprefix("revision ") if title else "(sql)"
        findings = sum(len(s.findings) for s in statements)
        approval = "**yes**" if any(s.needs_approval for s in statements) else "no"
        out.append(f"| `{name}` | {len(statements)} | {findings} | {approval} |")
    out.append("")
    for title, statements in _groups(plan):
        flagged = any(s.findings for s in statements)
        open_attr = " open" if flagged else ""
        out.append(f"<details{open_attr}><summary>{_md_escape(title or 'statements')}</summary>")
        out.append("")
        for statement in statements:
            marker = " 🛑 needs approval" if statement.needs_approval else ""
            out.append(
                f"**#{statement.index}** `{statement.source}:{statement.line}` "
                f"({statement.kind}){marker}"
            )
            out.append("")
            out.append("```sql")
            out.append(statement.text.replace("```", "`\u200b``"))
            out.append("```")
            for finding in statement.findings:
                out.append(f"- {_MARK[finding.decision]} {_md_escape(finding_line(finding))}")
            out.append("")
        out.append("</details>")
        out.append("")
    out.append(f"Plan hash: `{plan.hash}`")
    return "\n".join(out) + "\n"


def _md_escape(value: str) -> str:
    return value.replace("<", "&lt;").replace(">", "&gt;")


_GITHUB_LEVEL = {
    Decision.DENY: "error",
    Decision.NEEDS_APPROVAL: "error",
    Decision.WARN: "warning",
    Decision.ADVISORY: "notice",
}


def _gh_escape(value: str, *, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def _file_of(plan: Plan, statement: Statement) -> str:
    for revision in plan.revisions:
        if revision.id == statement.revision:
            return revision.path
    return statement.source


def github_annotations(plan: Plan) -> str:
    """GitHub Actions workflow commands: one annotation per finding."""
    lines = []
    for statement, finding in plan.findings:
        level = _GITHUB_LEVEL[finding.decision]
        props = [f"file={_gh_escape(_file_of(plan, statement), prop=True)}"]
        if statement.revision is None:
            props += [f"line={statement.line}", f"endLine={statement.end_line}"]
        props.append(f"title={_gh_escape(f'{finding.rule} {finding.name}', prop=True)}")
        message = finding_line(finding)
        if statement.revision is not None:
            message += f" — in: {first_line(statement)}"
        lines.append(f"::{level} {','.join(props)}::{_gh_escape(message)}")
    lines.append(f"::notice title=Signoff plan {plan.short_hash}::{_gh_escape(verdict(plan))}")
    return "\n".join(lines) + "\n"


_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def sarif(plan: Plan) -> dict[str, Any]:
    rules = catalogue()
    used = sorted({f.rule for _, f in plan.findings})
    index = {rule_id: i for i, rule_id in enumerate(used)}
    results = []
    for statement, finding in plan.findings:
        result: dict[str, Any] = {
            "ruleId": finding.rule,
            "ruleIndex": index[finding.rule],
            "level": _SARIF_LEVEL[finding.severity]
            if finding.decision is not Decision.ADVISORY
            else "note",
            "message": {"text": finding_line(finding)},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": _file_of(plan, statement)},
                        "region": _region(statement),
                    }
                }
            ],
            "partialFingerprints": {"signoffStatement/v1": statement.fingerprint},
            "properties": {
                "category": finding.category.value,
                "decision": finding.decision.value,
                "needsApproval": finding.needs_approval,
                "statementSha256": statement.sha256,
            },
        }
        if finding.allowed is not None:
            result["suppressions"] = [{"kind": "inSource", "justification": finding.allowed.reason}]
        results.append(result)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "signoff",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [
                            _sarif_rule(rules[rule_id]) for rule_id in used if rule_id in rules
                        ],
                    }
                },
                "results": results,
                "properties": {"planHash": plan.hash, "ruleset": plan.ruleset},
            }
        ],
    }


def _region(statement: Statement) -> Mapping[str, int]:
    if statement.revision is not None:
        return {"startLine": 1}
    return {"startLine": statement.line, "endLine": statement.end_line}


def _sarif_rule(rule: Any) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.rationale},
        "help": {"text": f"{rule.rationale}\n\nSafer: {rule.safer}"},
        "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
        "properties": {"category": rule.category.value},
    }


def rules_table(rules: Iterable[Any]) -> str:
    """The catalogue as a markdown table (README and `signoff rules --format markdown`)."""
    out = ["| id | name | category | severity | what it flags |", "|---|---|---|---|---|"]
    for rule in rules:
        out.append(
            f"| {rule.id} | {rule.name} | {rule.category.value} | {rule.severity.value} "
            f"| {_md_escape(rule.summary)} |"
        )
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# the rule catalogue (`signoff rules [ID]`)
# --------------------------------------------------------------------------


def rule_catalogue(selected: Sequence[Rule], fmt: str, *, explain: bool) -> str:
    """The catalogue (or, with ``explain``, the one rule in ``selected``) in ``fmt``."""
    if fmt == "json":
        return rules_json(selected)
    if fmt == "markdown":
        return rule_explained_markdown(selected[0]) if explain else rules_table(selected)
    if explain:
        return rule_explained(selected[0])
    return "".join(f"{r.id}  {r.name:<44} {r.category.value:<13} {r.summary}\n" for r in selected)


def _example_json(example: Example) -> dict[str, Any]:
    return {
        "sql": example.sql,
        "server_version_num": example.server_version,
        "server_version": example.version_text,
    }


def rules_json(selected: Iterable[Rule]) -> str:
    return (
        json.dumps(
            [
                {
                    "id": r.id,
                    "name": r.name,
                    "category": r.category.value,
                    "severity": r.severity.value,
                    "summary": r.summary,
                    "rationale": r.rationale,
                    "safer": r.safer,
                    "version_dependent": r.version_dependent,
                    "examples": {
                        "flags": [_example_json(e) for e in r.triggers],
                        "does_not_flag": [_example_json(e) for e in r.passes],
                    },
                }
                for r in selected
            ],
            indent=2,
        )
        + "\n"
    )


def _shown_examples(rule: Rule, examples: Sequence[Example]) -> Sequence[Example]:
    # A version-dependent rule shows more: the same SQL may sit on both sides.
    return examples[: 4 if rule.version_dependent else 3]


def _example_text(rule: Rule, example: Example) -> str:
    body = "    " + example.sql.replace("\n", "\n    ")
    if not rule.version_dependent:
        return body
    return f"  on {example.version_text}:\n{body}"


def rule_explained(rule: Rule) -> str:
    """Why the rule matters, the safer way, and SQL that it flags and does not flag
    (with the server version each example assumes, when that decides it)."""
    out = [
        f"{rule.id} {rule.name} ({rule.category.value}, {rule.severity.value})",
        "",
        rule.summary,
        "",
        f"Why: {rule.rationale}",
        "",
        f"Safer: {rule.safer}",
        "",
    ]
    if rule.version_dependent:
        out += ["What it flags depends on the server version; each example says which.", ""]
    out += [
        "Flags, for example:",
        *(_example_text(rule, e) for e in _shown_examples(rule, rule.triggers)),
        "Does not flag, for example:",
        *(_example_text(rule, e) for e in _shown_examples(rule, rule.passes)),
    ]
    return "\n".join(out) + "\n"


def rule_explained_markdown(rule: Rule) -> str:
    """One rule explained for a PR comment or a wiki page."""
    out = [
        f"### {rule.id} {rule.name} ({rule.category.value}, {rule.severity.value})",
        "",
        _md_escape(rule.summary),
        "",
        f"**Why:** {_md_escape(rule.rationale)}",
        "",
        f"**Safer:** {_md_escape(rule.safer)}",
        "",
    ]
    for title, examples in (
        ("Flags, for example:", rule.triggers),
        ("Does not flag, for example:", rule.passes),
    ):
        out += [f"**{title}**", ""]
        for example in _shown_examples(rule, examples):
            if rule.version_dependent:
                out += [f"On {example.version_text}:", ""]
            out += ["```sql", example.sql, "```", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------
# the dry-run report (`signoff dry-run`)
# --------------------------------------------------------------------------


def dry_run(report: DryRunReport, fmt: str) -> str:
    return dry_run_json(report) if fmt == "json" else dry_run_text(report)


def dry_run_json(report: DryRunReport) -> str:
    statements = {s.index: s for s in report.plan.statements}
    return (
        json.dumps(
            {
                "plan_hash": report.plan.hash,
                "server": report.server,
                "embedded": report.embedded,
                "migrated_to": list(report.migrated_to),
                "statements": [
                    {
                        "index": run.index,
                        "revision": statements[run.index].revision,
                        "kind": statements[run.index].kind,
                        "duration_ms": round(run.duration_ms, 3),
                        "outcome": run.outcome,
                        "error": run.error,
                        "locks": None
                        if run.locks is None
                        else [
                            {"locktype": lk.locktype, "relation": lk.relation, "mode": lk.mode}
                            for lk in run.locks
                        ],
                        "rules": [f.rule for f in statements[run.index].findings],
                    }
                    for run in report.runs
                ],
                "failed": None if report.failed is None else report.failed.index,
            },
            indent=2,
        )
        + "\n"
    )


def dry_run_text(report: DryRunReport) -> str:
    statements = {s.index: s for s in report.plan.statements}
    where = "an embedded PostgreSQL" if report.embedded else report.server
    base = ", ".join(report.migrated_to) or "base"
    out = [
        f"Dry run of plan {report.plan.short_hash} on a scratch database on {where} "
        f"(migrated to {base} first; dropped afterwards)",
        "",
        f"{'#':>4} {'ms':>9}  {'outcome':<22} locks taken / statement",
    ]
    current_revision: str | None = None
    for run in report.runs:
        statement = statements[run.index]
        if statement.revision != current_revision:
            current_revision = statement.revision
            out.append(f"-- revision {current_revision}")
        locks = (
            "(ran outside a transaction: not observable)"
            if run.locks is None
            else ", ".join(f"{lk.mode} on {lk.relation or lk.locktype}" for lk in run.locks) or "-"
        )
        out.append(
            f"{run.index:>4} {run.duration_ms:>9.2f}  {run.outcome[:22]:<22} "
            f"{first_line(statement)}"
        )
        if not statement.is_transaction_control:
            out.append(f"{'':>38}locks: {locks}")
        for finding in statement.findings:
            out.append(f"{'':>38}{finding_line(finding)}")
    out.append("")
    if report.failed is not None:
        statement = statements[report.failed.index]
        out.append(
            f"FAILED at statement #{report.failed.index} ({statement.source}:{statement.line}): "
            f"{report.failed.error}"
        )
    else:
        total = sum(run.duration_ms for run in report.runs)
        out.append(
            f"All {len(report.runs)} statements applied in {total:.1f} ms; "
            f"plan verdict: {verdict(report.plan)}."
        )
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# the apply report
# --------------------------------------------------------------------------


def apply_report(report: ApplyReport, plan: Plan, fmt: str) -> str:
    """The apply report as JSON, or as text for a CI log (``plan`` is the applied one)."""
    if fmt == "json":
        return json.dumps(report.to_json(), indent=2) + "\n"
    statements = {s.index: s for s in plan.statements}
    timeouts = ", ".join(f"{name} {value}" for name, value in report.timeouts.items())
    out = [
        f"Apply of plan {plan.short_hash} to {report.database}: {report.outcome.value}",
        f"  {report.reason}",
        f"  {timeouts or 'server timeouts'}; "
        f"waited {report.lock_waited_s:.1f} s for the apply lock",
    ]
    if report.statements or report.failure is not None:
        out += ["", f"{'#':>4} {'ms':>9}  {'tag':<18} {'rows':>6}  statement"]
    current_revision: str | None = None
    rows = [(s.index, s.duration_ms, s.tag, s.rows) for s in report.statements]
    if report.failure is not None:
        failure = report.failure
        rows.append((failure.index, failure.duration_ms, f"ERROR {failure.sqlstate}", None))
    for index, duration_ms, tag, count in rows:
        statement = statements[index]
        if statement.revision != current_revision:
            current_revision = statement.revision
            out.append(f"-- revision {current_revision}")
        mark = "  (rolled back)" if index in report.rolled_back else ""
        out.append(
            f"{index:>4} {duration_ms:>9.2f}  {tag[:18]:<18} {'' if count is None else count:>6}  "
            f"{first_line(statement)}{mark}"
        )
    if report.not_run:
        revisions = ", ".join(report.not_applied_revisions) or "-"
        out += ["", f"Not run: {len(report.not_run)} statement(s); not applied: {revisions}"]
    return "\n".join(out) + "\n"
