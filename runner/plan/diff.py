"""The difference between two plans, statement by statement.

Statements are aligned by their sha256 (the identity of the text that runs), so
an unchanged statement that moved is still unchanged; a block of statements
replaced by another is paired in order as "changed", with sqlglot's semantic
diff of the two ASTs (what the reviewer needs: ``varchar(20) -> varchar(40)``,
``cascade: False -> True``), the rest of an uneven block as added or removed.

Pure: two ``Plan`` objects in, a ``PlanDiff`` out, and text/markdown renderers.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.diff import Insert, Move, Remove, Update
from sqlglot.diff import diff as sqlglot_diff
from sqlglot.errors import SqlglotError

from runner.errors import SignoffError
from runner.plan.model import Plan, Statement
from runner.plan.render import first_line

ChangeKind = Literal["added", "removed", "changed", "findings"]
_KINDS: tuple[ChangeKind, ...] = ("added", "removed", "changed", "findings")
_SQL_WIDTH = 120


@dataclass(frozen=True)
class StatementChange:
    """One statement that differs. ``semantic`` holds one line per edit of the AST
    (changed statements only); ``semantic_note`` says why it is empty when the
    text could not be parsed."""

    kind: ChangeKind
    old: Statement | None
    new: Statement | None
    semantic: tuple[str, ...] = ()
    semantic_note: str | None = None

    @property
    def statement(self) -> Statement:
        chosen = self.new if self.new is not None else self.old
        assert chosen is not None  # one of the two always exists
        return chosen


@dataclass(frozen=True)
class PlanDiff:
    old_hash: str
    new_hash: str
    target: tuple[str, str]
    ruleset: tuple[str, str]
    revisions_added: tuple[str, ...]
    revisions_removed: tuple[str, ...]
    changes: tuple[StatementChange, ...]
    unchanged: int

    @property
    def identical(self) -> bool:
        return self.old_hash == self.new_hash and not self.changes

    def count(self, kind: ChangeKind) -> int:
        return sum(1 for c in self.changes if c.kind == kind)


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    old_ids = [r.id for r in old.revisions]
    new_ids = [r.id for r in new.revisions]
    changes: list[StatementChange] = []
    unchanged = 0
    matcher = difflib.SequenceMatcher(
        a=[s.sha256 for s in old.statements], b=[s.sha256 for s in new.statements], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        before, after = old.statements[i1:i2], new.statements[j1:j2]
        if tag == "equal":
            for a, b in zip(before, after, strict=True):
                if _rule_ids(a) != _rule_ids(b):
                    changes.append(StatementChange("findings", a, b))
                else:
                    unchanged += 1
            continue
        for a, b in zip(before, after, strict=False):
            changes.append(_changed(a, b))
        paired = min(len(before), len(after))
        changes.extend(StatementChange("removed", a, None) for a in before[paired:])
        changes.extend(StatementChange("added", None, b) for b in after[paired:])
    return PlanDiff(
        old_hash=old.hash,
        new_hash=new.hash,
        target=(old.target, new.target),
        ruleset=(old.ruleset, new.ruleset),
        revisions_added=tuple(r for r in new_ids if r not in old_ids),
        revisions_removed=tuple(r for r in old_ids if r not in new_ids),
        changes=tuple(changes),
        unchanged=unchanged,
    )


def _rule_ids(statement: Statement) -> tuple[str, ...]:
    return tuple(sorted(f.rule for f in statement.findings))


def _changed(old: Statement, new: Statement) -> StatementChange:
    try:
        source = sqlglot.parse_one(old.text, read="postgres")
        target = sqlglot.parse_one(new.text, read="postgres")
    except SqlglotError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        note = f"not parseable for a semantic diff: {first}"
        return StatementChange("changed", old, new, (), note)
    if isinstance(source, exp.Command) or isinstance(target, exp.Command):
        return StatementChange(
            "changed", old, new, (), "sqlglot reads it as an opaque command; compare the text"
        )
    return StatementChange("changed", old, new, tuple(semantic_diff(source, target)))


def semantic_diff(source: exp.Expr, target: exp.Expr) -> list[str]:
    """sqlglot's semantic diff as lines, only the outermost node of each inserted or
    removed subtree (sqlglot lists every node of it)."""
    edits = sqlglot_diff(source, target, delta_only=True)
    inserted = {id(e.expression) for e in edits if isinstance(e, Insert)}
    removed = {id(e.expression) for e in edits if isinstance(e, Remove)}
    lines: list[str] = []
    for edit in edits:
        if isinstance(edit, Insert):
            if not _has_ancestor_in(edit.expression, inserted):
                lines.append(f"+ {_kind(edit.expression)} {_sql(edit.expression)}")
        elif isinstance(edit, Remove):
            if not _has_ancestor_in(edit.expression, removed):
                lines.append(f"- {_kind(edit.expression)} {_sql(edit.expression)}")
        elif isinstance(edit, Move):
            lines.append(f"~ moved {_kind(edit.target)} {_sql(edit.target)}")
        elif isinstance(edit, Update):
            lines.append(_update_line(edit.source, edit.target))
    return lines


def _has_ancestor_in(node: exp.Expr, ids: set[int]) -> bool:
    parent = node.parent
    while parent is not None:
        if id(parent) in ids:
            return True
        parent = parent.parent
    return False


def _update_line(source: exp.Expr, target: exp.Expr) -> str:
    # An Update of a node is often a change of its flags (IF EXISTS, CASCADE,
    # CONCURRENTLY) with the children kept: name those flags, not the whole text.
    flags: list[str] = []
    for key in sorted(set(source.args) | set(target.args)):
        before, after = source.args.get(key), target.args.get(key)
        if _is_node(before) or _is_node(after):
            continue
        if before != after:
            flags.append(f"{key}: {_flag(before)} -> {_flag(after)}")
    if flags:
        return f"~ {_kind(target)} " + ", ".join(flags)
    return f"~ {_kind(target)} {_sql(source)} -> {_sql(target)}"


def _is_node(value: Any) -> bool:
    if isinstance(value, list):
        return any(isinstance(v, exp.Expr) for v in value)
    return isinstance(value, exp.Expr)


def _flag(value: Any) -> str:
    return "unset" if value is None else str(value)


def _kind(node: exp.Expr) -> str:
    return type(node).__name__


def _sql(node: exp.Expr) -> str:
    try:
        text = node.sql(dialect="postgres")
    except SqlglotError:
        text = repr(node)
    text = " ".join(text.split())
    return text if len(text) <= _SQL_WIDTH else text[: _SQL_WIDTH - 3] + "..."


# --- rendering -----------------------------------------------------------------------------------


def _where(statement: Statement) -> str:
    return f"#{statement.index} {statement.source}:{statement.line}"


def summary(plan_diff: PlanDiff) -> str:
    if plan_diff.identical:
        return f"plan {plan_diff.new_hash[:12]} is the same as {plan_diff.old_hash[:12]}"
    counts = ", ".join(
        f"{plan_diff.count(kind)} {kind}" for kind in _KINDS if plan_diff.count(kind)
    )
    return (
        f"plan {plan_diff.old_hash[:12]} -> {plan_diff.new_hash[:12]}: "
        f"{counts or 'no statement changed'}, {plan_diff.unchanged} unchanged"
    )


def _context_lines(plan_diff: PlanDiff) -> list[str]:
    lines: list[str] = []
    if plan_diff.target[0] != plan_diff.target[1]:
        lines.append(f"target: {plan_diff.target[0]} -> {plan_diff.target[1]}")
    if plan_diff.ruleset[0] != plan_diff.ruleset[1]:
        lines.append(f"rule set: {plan_diff.ruleset[0]} -> {plan_diff.ruleset[1]}")
    if plan_diff.revisions_added:
        lines.append("revisions added: " + ", ".join(plan_diff.revisions_added))
    if plan_diff.revisions_removed:
        lines.append("revisions removed: " + ", ".join(plan_diff.revisions_removed))
    return lines


def _change_detail(change: StatementChange) -> list[str]:
    if change.kind == "changed":
        assert change.old is not None and change.new is not None
        out = [f"was: {first_line(change.old)}", f"now: {first_line(change.new)}"]
        out += list(change.semantic)
        if change.semantic_note:
            out.append(f"({change.semantic_note})")
        return out
    if change.kind == "findings":
        assert change.old is not None and change.new is not None
        return [
            "findings: "
            + (", ".join(_rule_ids(change.old)) or "none")
            + " -> "
            + (", ".join(_rule_ids(change.new)) or "none")
        ]
    return [first_line(change.statement)]


def render_text(plan_diff: PlanDiff) -> str:
    """For a terminal (``signoff diff OLD.json NEW.json``)."""
    out = [summary(plan_diff)]
    out += [f"  {line}" for line in _context_lines(plan_diff)]
    for change in plan_diff.changes:
        out.append(f"{change.kind:<8} {_where(change.statement)}")
        out += [f"    {line}" for line in _change_detail(change)]
    return "\n".join(out) + "\n"


def render_markdown(plan_diff: PlanDiff) -> list[str]:
    """Markdown lines for the sticky plan comment's "what changed" section."""
    out = [f"- {line}" for line in _context_lines(plan_diff)]
    for change in plan_diff.changes:
        out.append(f"- **{change.kind}** `{_where(change.statement)}`")
        out += [f"  - `{_code(line)}`" for line in _change_detail(change)]
    return out


def _code(value: str) -> str:
    return value.replace("`", "'")


def load_plan_file(path: Path) -> Plan:
    """A plan JSON file, or a one-line error naming the file and the fix."""
    try:
        return Plan.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SignoffError(f"{path}: cannot be read ({error.strerror or error})") from error
    except (ValueError, KeyError, TypeError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
        raise SignoffError(
            f"{path}: not a valid plan ({detail}); write one with 'signoff plan --format json'"
        ) from error


def diff_files(old: Path, new: Path) -> str:
    """``signoff diff OLD.json NEW.json`` as text."""
    return render_text(diff_plans(load_plan_file(old), load_plan_file(new)))


def diff_texts(old_json: str, new_json: str) -> str:
    """``signoff diff OLD.json NEW.json``: both are ``Plan.loads`` JSON (their hashes
    are checked on load, so a plan edited by hand is refused)."""
    return render_text(diff_plans(Plan.loads(old_json), Plan.loads(new_json)))


def changed_indexes(plan_diff: PlanDiff) -> Sequence[int]:
    """New-plan indexes of the statements that are added or changed."""
    return [c.new.index for c in plan_diff.changes if c.new is not None and c.kind != "findings"]
