"""The masking view of each database, and the service's side of masking.

``DatabaseMasking`` is one database's catalog seen through the policy: which columns
of which relations are masked (views by their definitions' lineage), the lineage of
each statement text (cached), and the RowMask of a result. ``MaskingEngine`` is what
the service holds: the policy, a ``DatabaseMasking`` per database (read once, read
again after DDL or when a result names a table it does not know), and the decision
side (``review``: COPY refused by policy, an unmask covered by a grant).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from runner.gateway.model import AuditDecision, Grant, Session, StatementDecision

from .catalog import Catalog, Relation, read_catalog
from .config import REDACTED, MaskingConfig, MaskRule
from .detectors import detectors as make_detectors
from .lineage import StatementLineage, Taint, analyse
from .plan import ColumnVerdict, Field, Planner, verdict_for_computed
from .replace import Replace, replacer
from .rewrite import CopyMask, RowMask

UNMASK_RULE = "MASK001"
WRITE_RULE = "MASK002"
_UNKNOWN = MaskRule("catalog-unknown", names=("*",))
_LINEAGE_CACHE = 1024
GrantLookup = Callable[[str, str, str, datetime], Grant | None]


def unmask_finding(grant: Grant) -> dict[str, Any]:
    return {
        "rule": UNMASK_RULE,
        "name": "unmasked-result",
        "category": "access-control",
        "severity": "warning",
        "decision": "needs-approval",
        "needs_approval": True,
        "message": (
            f"the result is not masked: grant {grant.id} by {grant.approver} covers this run"
        ),
        "allowed": None,
        "note": None,
    }


def is_unmasked(decision: StatementDecision) -> bool:
    """The statement runs unmasked: the engine found a grant for it (never merely
    because it was approved for something else)."""
    return decision.decision is AuditDecision.APPROVED and any(
        f.get("rule") == UNMASK_RULE for f in decision.findings
    )


class DatabaseMasking:
    """One database's catalog through the policy (immutable: a refresh makes a new one)."""

    def __init__(self, config: MaskingConfig, catalog: Catalog, key: bytes | None) -> None:
        self.config = config
        self.catalog = catalog
        self.key = key
        self.column_rules = [r for r in config.rules if r.columns or r.names]
        found = make_detectors(tuple(d for r in config.rules for d in r.detect), config.mrn)
        rule_of = {d: r for r in config.rules for d in r.detect}
        self.detectors: list[tuple[Any, Replace]] = [
            (d, replacer(rule_of[d.name], key)) for d in found
        ]
        self.planner = Planner(
            is_text=catalog.is_text,
            detectors=self.detectors,
            key=key,
            non_text=config.non_text,
            detector_rule=", ".join(r.name for r in config.rules if r.detect) or "detectors",
            prefilter=config.mrn is None,
        )
        self._masked: dict[int, dict[str, Taint]] = {}
        self._visiting: set[int] = set()
        self._lineage: dict[str, StatementLineage] = {}
        self._lock = threading.Lock()
        self.any_masked = catalog.complete is False or any(
            self.masked_of(r) for r in catalog.relations.values()
        )

    def rule_for(self, qualified: str, name: str) -> MaskRule | None:
        for rule in self.column_rules:
            if rule.matches_column(qualified, name):
                return rule
        return None

    def masked_of(self, relation: Relation) -> dict[str, Taint]:
        """Lowercase column name -> taint, for the relation's masked columns (a view's
        by its own names first, then by its definition's lineage)."""
        known = self._masked.get(relation.oid)
        if known is not None:
            return known
        if relation.oid in self._visiting:
            return {}
        self._visiting.add(relation.oid)
        try:
            masked: dict[str, Taint] = {}
            lineage = None
            sql = self.catalog.view_sql.get(relation.oid)
            if sql is not None:
                lineage = analyse(sql, self.catalog, self.masked_of)
            for column in relation.columns:
                rule = self.rule_for(column.qualified, column.name)
                if rule is not None:
                    masked[column.name.lower()] = Taint(column.qualified, rule)
                    continue
                if lineage is None:
                    continue
                taint = _position(lineage, column.attnum - 1, len(relation.columns))
                if taint is not None:
                    masked[column.name.lower()] = taint
        finally:
            self._visiting.discard(relation.oid)
        self._masked[relation.oid] = masked
        return masked

    def lineage(self, sql: str) -> StatementLineage:
        known = self._lineage.get(sql)
        if known is None:
            with self._lock:
                known = analyse(sql, self.catalog, self.masked_of)
                if len(self._lineage) >= _LINEAGE_CACHE:
                    del self._lineage[next(iter(self._lineage))]
                self._lineage[sql] = known
        return known

    def verdicts(
        self, fields: Sequence[Field], sql: str | None
    ) -> tuple[list[ColumnVerdict | None], bool]:
        """Each column's verdict, and whether a table OID was not in the catalog."""
        verdicts: list[ColumnVerdict | None] = []
        unknown = False
        lineage: StatementLineage | None = None
        fail_closed = (
            Taint("a statement the gateway cannot trace", _UNKNOWN) if self.any_masked else None
        )
        for i, field in enumerate(fields):
            if field.table_oid:
                relation = self.catalog.relations.get(field.table_oid)
                column = (
                    None if relation is None else self.catalog.column(field.table_oid, field.attnum)
                )
                if relation is None or column is None:
                    unknown = True
                    verdicts.append(
                        ColumnVerdict(Taint(f"table oid {field.table_oid}", _UNKNOWN), True)
                    )
                    continue
                taint = self.masked_of(relation).get(column.name.lower())
                if taint is None:
                    verdicts.append(None)
                else:
                    verdicts.append(ColumnVerdict(taint, taint.source != column.qualified))
                continue
            rule = self.rule_for(f"?.?.{field.name}", field.name)
            if rule is not None:  # a computed column named like PHI (AS ssn)
                verdicts.append(ColumnVerdict(Taint(f"output {field.name}", rule), True))
                continue
            if sql is None:
                verdicts.append(None if fail_closed is None else ColumnVerdict(fail_closed, True))
                continue
            if lineage is None:
                lineage = self.lineage(sql)
                if lineage.outputs is not None and len(lineage.outputs) != len(fields):
                    lineage = StatementLineage(None, lineage.any, lineage.opaque)
            verdicts.append(verdict_for_computed(i, field, lineage, fail_closed))
        return verdicts, unknown

    def row_mask(
        self, fields: Sequence[Field], sql: str | None, codec: str
    ) -> tuple[RowMask | None, bool]:
        verdicts, unknown = self.verdicts(fields, sql)
        return self.planner.mask(fields, verdicts, codec), unknown

    def copy_columns(self, sql: str) -> list[tuple[Field, ColumnVerdict | None]] | None:
        """The columns of ``COPY ... TO STDOUT`` and their verdicts (None: not a COPY
        the gateway can read; every row is dropped then, when anything is masked)."""
        import sqlglot
        from sqlglot import exp

        try:
            tree = sqlglot.parse_one(sql, read="postgres")
        except Exception:
            return None
        if not isinstance(tree, exp.Copy):
            return None
        target = tree.this
        out: list[tuple[Field, ColumnVerdict | None]] = []
        if isinstance(target, exp.Subquery):
            lineage = self.lineage(target.this.sql(dialect="postgres"))
            projections = target.this.expressions if isinstance(target.this, exp.Select) else []
            fail = lineage.any or (
                Taint("a COPY the gateway cannot trace", _UNKNOWN) if self.any_masked else None
            )
            for i, _ in enumerate(projections):
                taint = _position(lineage, i, len(projections)) if lineage.outputs else fail
                out.append(
                    (
                        Field(str(i), 0, 0, 0, 0),
                        None if taint is None else ColumnVerdict(taint, True),
                    )
                )
            return out if projections else None
        names: list[str] | None = None
        if isinstance(target, exp.Schema):
            names = [e.name.lower() for e in target.expressions]
            target = target.this
        if not isinstance(target, exp.Table):
            return None
        relations = self.catalog.find(target.db or None, target.name)
        if len(relations) != 1:
            return None
        relation = relations[0]
        masked = self.masked_of(relation)
        columns = list(relation.columns)
        if names is not None:
            by_name = {c.name.lower(): c for c in columns}
            if any(n not in by_name for n in names):
                return None
            columns = [by_name[n] for n in names]
        for column in columns:
            taint = masked.get(column.name.lower())
            verdict = (
                None if taint is None else ColumnVerdict(taint, taint.source != column.qualified)
            )
            out.append(
                (Field(column.name, relation.oid, column.attnum, column.type_oid, 0), verdict)
            )
        return out

    def copy_mask(
        self, columns: list[tuple[Field, ColumnVerdict | None]], *, binary: bool, sql: str = ""
    ) -> CopyMask | None:
        from runner.plan.statements import tokenize

        fields = [f for f, _ in columns]
        mask = self.planner.mask(fields, [v for _, v in columns], "utf-8")
        if mask is None or (not mask.masked and not mask.actions):
            return None
        fmt = "text"
        try:
            words = [t.text.upper() for t in tokenize(sql)] if sql else []
        except Exception:
            words = []
        if "CSV" in words:
            fmt = "csv"
        if binary or "BINARY" in words:
            fmt = "drop"
        return CopyMask(dict(mask.actions), mask.masked, fmt)

    def touches_masked(self, sql: str) -> bool:
        lineage = self.lineage(sql)
        return lineage.any is not None or (lineage.opaque and self.any_masked)


def _position(lineage: StatementLineage, index: int, width: int) -> Taint | None:
    outputs = lineage.outputs
    if outputs is not None and len(outputs) == width:
        return outputs[index]
    return lineage.any


class MaskingEngine:
    """The service's masking: the policy, each database's view, and the decisions."""

    def __init__(
        self,
        config: MaskingConfig,
        catalog_url: Callable[[str], str],
    ) -> None:
        self.config = config
        self._catalog_url = catalog_url
        self._key = config.secret() if config.uses_pseudonyms else None
        self._databases: dict[str, DatabaseMasking] = {}
        self._lock = threading.Lock()
        self._refreshing: set[str] = set()
        self.background: set[asyncio.Task[None]] = set()

    def masks(self, session: Session) -> bool:
        return self.config.masks(session.role)

    def database(self, database: str) -> DatabaseMasking:
        with self._lock:
            known = self._databases.get(database)
        if known is not None:
            return known
        return self.refresh(database)

    def refresh(self, database: str) -> DatabaseMasking:
        """Read the catalog again (blocking: call it off the event loop). A catalog
        that cannot be read masks every column of every result (complete=False)."""
        try:
            catalog = read_catalog(self._catalog_url(database))
        except Exception:
            catalog = Catalog(complete=False)
        view = DatabaseMasking(self.config, catalog, self._key)
        with self._lock:
            self._databases[database] = view
        return view

    def refresh_soon(self, database: str) -> None:
        """After DDL, or a table OID the catalog did not know: read it again in a thread."""
        if database in self._refreshing:
            return
        self._refreshing.add(database)

        async def run() -> None:
            try:
                await asyncio.to_thread(self.refresh, database)
            finally:
                self._refreshing.discard(database)

        with contextlib.suppress(RuntimeError):
            task = asyncio.get_running_loop().create_task(run())
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            return
        self._refreshing.discard(database)

    # -- decisions ---------------------------------------------------------------------

    def review(
        self,
        session: Session,
        decisions: list[StatementDecision],
        *,
        consume_grant: GrantLookup,
        now: Callable[[], datetime],
    ) -> list[StatementDecision]:
        """A masked session's decisions, adjusted: a COPY out of masked data refused
        when the policy says so; a statement reading masked data, for a role that may
        unmask, run unmasked when a grant for its fingerprint is there (used up)."""
        if not self.masks(session):
            return decisions
        view = self.database(session.database)
        unmask = self.config.may_unmask(session.role)
        out = decisions
        for i, decision in enumerate(decisions):
            if decision.blocked:
                continue
            changed = None
            if (
                _is_copy_out(decision.text)
                and view.touches_masked(decision.text)
                and (self.config.copy == "refuse" or not _copy_text_format(decision.text))
            ):
                changed = decision._replace(
                    decision=AuditDecision.BLOCKED,
                    grant=None,
                    reason=(
                        "COPY TO STDOUT of masked columns is refused by masking.copy; "
                        "SELECT them instead (masked row by row), or set masking.copy = "
                        '"mask" (text and csv formats)'
                    ),
                )
            if changed is None and decision.decision is AuditDecision.ALLOWED:
                body = _prepared_body(decision.text)  # PREPARE x AS <the write>
                writes = view.lineage(body or decision.text).writes_masked
                if writes is not None:
                    changed = self._write_of_masked(session, decision, writes, consume_grant, now)
            if (
                changed is None
                and unmask
                and decision.decision is AuditDecision.ALLOWED
                and view.touches_masked(decision.text)
            ):
                grant = consume_grant(session.database, decision.fingerprint, session.id, now())
                if grant is not None:
                    changed = decision._replace(
                        decision=AuditDecision.APPROVED,
                        grant=grant,
                        findings=(*decision.findings, unmask_finding(grant)),
                    )
            if changed is not None:
                if out is decisions:
                    out = list(decisions)
                out[i] = changed
        return out

    def _write_of_masked(
        self,
        session: Session,
        decision: StatementDecision,
        writes: Taint,
        consume_grant: GrantLookup,
        now: Callable[[], datetime],
    ) -> StatementDecision:
        """A masked role's write that reads masked data: it could copy PHI into a
        column no rule masks, and read it back unmasked; it runs with a grant only."""
        finding = {
            "rule": WRITE_RULE,
            "name": "write-of-masked-data",
            "category": "access-control",
            "severity": "error",
            "decision": "needs-approval",
            "needs_approval": True,
            "message": (
                f"a write that reads {writes.source} (masked by rule {writes.rule.name}) "
                "could copy it where no rule masks it"
            ),
            "allowed": None,
            "note": None,
        }
        findings = (*decision.findings, finding)
        grant = consume_grant(session.database, decision.fingerprint, session.id, now())
        if grant is not None:
            return decision._replace(
                decision=AuditDecision.APPROVED, grant=grant, findings=findings
            )
        return decision._replace(
            decision=AuditDecision.BLOCKED,
            findings=findings,
            reason=(
                f"needs approval ({WRITE_RULE} write-of-masked-data: it reads "
                f"{writes.source}, which role {session.role}'s results mask); an approved "
                f"plan or `signoff gateway grant --database {session.database} "
                f"--fingerprint {decision.fingerprint}` allows it once"
            ),
        )

    def digest(self) -> str | None:
        return self.config.digest()


def _is_copy_out(text: str) -> bool:
    from runner.plan.statements import tokenize

    try:
        tokens = tokenize(text)
    except Exception:
        return False
    words = [t.text.upper() for t in tokens]
    return bool(words) and words[0] == "COPY" and "TO" in words and "STDOUT" in words


def _prepared_body(text: str) -> str | None:
    """The statement a ``PREPARE name [(types)] AS statement`` holds, else None."""
    from runner.plan.statements import tokenize

    try:
        tokens = tokenize(text)
    except Exception:
        return None
    if not tokens or tokens[0].text.upper() != "PREPARE":
        return None
    for token in tokens[1:]:
        if token.text.upper() == "AS":
            return text[token.end + 1 :]
    return None


def _copy_text_format(text: str) -> bool:
    from runner.plan.statements import tokenize

    try:
        words = [t.text.upper() for t in tokenize(text)]
    except Exception:
        return False
    return "BINARY" not in words


def masked_columns_json(mask: RowMask | None, copy: Any = None) -> tuple[Mapping[str, Any], ...]:
    """The outcome's masked_columns: each masked column and the rule (never a value)."""
    columns: list[dict[str, object]] = []
    if mask is not None:
        columns += [c.to_json() for c in mask.masked]
        for position in sorted(mask.hits & mask.detected):
            columns.append(
                {
                    "position": position,
                    "output": mask.names[position] if position < len(mask.names) else "",
                    "column": "(values)",
                    "rule": mask.detector_rule,
                    "how": "detected",
                }
            )
    if copy is not None:
        columns += [c.to_json() for c in copy.masked]
    return tuple(columns)


__all__ = [
    "REDACTED",
    "UNMASK_RULE",
    "DatabaseMasking",
    "MaskingEngine",
    "is_unmasked",
    "masked_columns_json",
    "unmask_finding",
]
