"""Plan, Statement and Finding: the planner's output, its canonical JSON and its hash.

The plan hash is the contract the whole product leans on: a reviewer approves
it, the gateway grants against it. It is sha256 over canonical JSON (sorted
keys, no whitespace) of the target database, the ordered revision ids, the
ordered statement sha256s and the rule-set version, so any change to any
statement, or to the rules that judged it, voids earlier approvals.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

PLAN_FORMAT = "signoff.plan/v1"
SHORT_HASH_LEN = 12


class Category(StrEnum):
    DESTRUCTIVE = "destructive"
    # Weakens who may read or change PHI, or switches off a control that records
    # or restricts it (RLS, triggers, audit logging, the server-side guard).
    ACCESS_CONTROL = "access-control"
    # Reaches outside the database's own access model: the server's files and
    # programs, other servers, other sessions, server configuration. Denied by
    # default; only a per-role or per-rule setting lets one through.
    ESCAPE_HATCH = "escape-hatch"
    LOCKING = "locking"
    INCOMPATIBLE = "incompatible"
    UNANALYSABLE = "unanalysable"
    HYGIENE = "hygiene"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 1, Severity.WARNING: 2, Severity.ERROR: 3}


class Decision(StrEnum):
    """What a finding means for the plan, from configuration (or an inline allow)."""

    ADVISORY = "advisory"  # shown, never changes the exit status
    WARN = "warn"  # shown as a warning; fails only at/above --fail-on
    NEEDS_APPROVAL = "needs-approval"  # the plan waits for a reviewer
    DENY = "deny"  # the plan cannot be applied as written

    @property
    def rank(self) -> int:
        return _DECISION_RANK[self]


_DECISION_RANK = {
    Decision.ADVISORY: 0,
    Decision.WARN: 1,
    Decision.NEEDS_APPROVAL: 2,
    Decision.DENY: 3,
}


def sha256_hex(data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the form every hash is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Allowance:
    """An inline ``-- signoff: allow SOxxx because <reason>`` that applied to a finding."""

    reason: str
    line: int


@dataclass(frozen=True)
class Finding:
    rule: str
    name: str
    category: Category
    severity: Severity
    decision: Decision
    message: str
    allowed: Allowance | None = None
    # Why the decision is what it is when it is not the category default
    # (e.g. an inline allow that was refused for a destructive finding).
    note: str | None = None

    @property
    def needs_approval(self) -> bool:
        return self.decision is Decision.NEEDS_APPROVAL

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "name": self.name,
            "category": self.category.value,
            "severity": self.severity.value,
            "decision": self.decision.value,
            "needs_approval": self.needs_approval,
            "message": self.message,
            "allowed": (
                None
                if self.allowed is None
                else {"reason": self.allowed.reason, "line": self.allowed.line}
            ),
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        allowed = data.get("allowed")
        return cls(
            rule=data["rule"],
            name=data["name"],
            category=Category(data["category"]),
            severity=Severity(data["severity"]),
            decision=Decision(data["decision"]),
            message=data["message"],
            allowed=None if not allowed else Allowance(allowed["reason"], allowed["line"]),
            note=data.get("note"),
        )


@dataclass(frozen=True)
class Statement:
    """One statement exactly as it will run, with where it came from and what was found.

    ``text`` is the original text byte for byte (leading comments included, the
    terminating semicolon not); ``transaction`` numbers the explicit transaction
    the statement runs in, or is None when it runs on its own (autocommit).
    """

    index: int
    revision: str | None
    source: str  # file or revision the line numbers refer to
    line: int
    end_line: int
    text: str
    sha256: str
    fingerprint: str
    kind: str
    transaction: int | None
    findings: tuple[Finding, ...] = ()

    @property
    def needs_approval(self) -> bool:
        return any(f.needs_approval for f in self.findings)

    @property
    def is_transaction_control(self) -> bool:
        return self.kind in TRANSACTION_CONTROL_KINDS

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "revision": self.revision,
            "source": self.source,
            "line": self.line,
            "end_line": self.end_line,
            "text": self.text,
            "sha256": self.sha256,
            "fingerprint": self.fingerprint,
            "kind": self.kind,
            "transaction": self.transaction,
            "needs_approval": self.needs_approval,
            "findings": [f.to_json() for f in self.findings],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Statement:
        return cls(
            index=data["index"],
            revision=data["revision"],
            source=data["source"],
            line=data["line"],
            end_line=data["end_line"],
            text=data["text"],
            sha256=data["sha256"],
            fingerprint=data["fingerprint"],
            kind=data["kind"],
            transaction=data["transaction"],
            findings=tuple(Finding.from_json(f) for f in data["findings"]),
        )


TRANSACTION_CONTROL_KINDS = frozenset({"begin", "commit", "rollback"})


@dataclass(frozen=True)
class Revision:
    id: str
    down_revisions: tuple[str, ...]
    message: str
    path: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "down_revisions": list(self.down_revisions),
            "message": self.message,
            "path": self.path,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Revision:
        return cls(
            id=data["id"],
            down_revisions=tuple(data["down_revisions"]),
            message=data["message"],
            path=data["path"],
        )


@dataclass(frozen=True)
class AnalysisBasis:
    """What the analysis knew about the server; shown so a reviewer can judge it."""

    server_version_num: int | None  # None: unknown, the analysis assumed the worst
    server_version_source: str  # "database", "config", "assumed-worst"
    schema_source: str  # "database+plan" or "plan"

    def to_json(self) -> dict[str, Any]:
        return {
            "server_version_num": self.server_version_num,
            "server_version_source": self.server_version_source,
            "schema_source": self.schema_source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnalysisBasis:
        return cls(
            server_version_num=data["server_version_num"],
            server_version_source=data["server_version_source"],
            schema_source=data["schema_source"],
        )


@dataclass(frozen=True)
class Plan:
    target: str
    ruleset: str
    revisions: tuple[Revision, ...]
    statements: tuple[Statement, ...]
    basis: AnalysisBasis
    from_revisions: tuple[str, ...] = ()
    to_revision: str | None = None

    @property
    def hash(self) -> str:
        return plan_hash(
            self.target,
            [r.id for r in self.revisions],
            [s.sha256 for s in self.statements],
            self.ruleset,
        )

    @property
    def short_hash(self) -> str:
        return self.hash[:SHORT_HASH_LEN]

    @property
    def findings(self) -> Iterable[tuple[Statement, Finding]]:
        for statement in self.statements:
            for finding in statement.findings:
                yield statement, finding

    @property
    def needs_approval(self) -> bool:
        return any(s.needs_approval for s in self.statements)

    @property
    def denied(self) -> bool:
        return any(f.decision is Decision.DENY for _, f in self.findings)

    def statements_of(self, revision: str | None) -> list[Statement]:
        return [s for s in self.statements if s.revision == revision]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "target": self.target,
            "ruleset": self.ruleset,
            "from_revisions": list(self.from_revisions),
            "to_revision": self.to_revision,
            "basis": self.basis.to_json(),
            "revisions": [r.to_json() for r in self.revisions],
            "statements": [s.to_json() for s in self.statements],
            "needs_approval": self.needs_approval,
            "hash": self.hash,
            "short_hash": self.short_hash,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """Load a plan and check that it is what it says it is.

        The stored hash and every statement's sha256 are recomputed: a plan file
        edited by hand is refused rather than trusted.
        """
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a Signoff plan (format {data.get('format')!r})")
        plan = cls(
            target=data["target"],
            ruleset=data["ruleset"],
            revisions=tuple(Revision.from_json(r) for r in data["revisions"]),
            statements=tuple(Statement.from_json(s) for s in data["statements"]),
            basis=AnalysisBasis.from_json(data["basis"]),
            from_revisions=tuple(data.get("from_revisions", ())),
            to_revision=data.get("to_revision"),
        )
        for statement in plan.statements:
            if sha256_hex(statement.text) != statement.sha256:
                raise ValueError(f"statement {statement.index}: sha256 does not match its text")
        if data.get("hash") != plan.hash:
            raise ValueError("plan hash does not match its contents")
        return plan

    @classmethod
    def loads(cls, text: str) -> Plan:
        return cls.from_json(json.loads(text))


def plan_hash(
    target: str, revision_ids: Iterable[str], statement_sha256s: Iterable[str], ruleset: str
) -> str:
    """The plan hash exactly as DESIGN.md defines it."""
    return sha256_hex(
        canonical_json(
            {
                "target": target,
                "revisions": list(revision_ids),
                "statements": list(statement_sha256s),
                "ruleset": ruleset,
            }
        )
    )
