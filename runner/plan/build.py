"""Build a Plan from SQL text: the pure core's one entry point.

Text in (offline SQL per revision, or plain SQL files), a Plan out. The
database, when there is one, is seen only through the facts handed in
(server version, column types), read at the edge by ``runner.dbinfo``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runner.plan.analyse import Analysis
from runner.plan.functions import FunctionFacts
from runner.plan.model import AnalysisBasis, Plan, Revision, Statement
from runner.plan.policy import Policy
from runner.plan.rules import RULESET_VERSION
from runner.plan.schema import SchemaState
from runner.plan.statements import split_statements


@dataclass(frozen=True)
class SqlSource:
    """A piece of SQL and what it belongs to (a revision, or a file for lint)."""

    source: str  # what line numbers refer to: a file name or "revision <id>"
    sql: str
    revision: str | None = None
    # A file given to lint: psql runs it, so its backslash lines are meta-commands.
    psql_script: bool = False


@dataclass(frozen=True)
class ServerFacts:
    """What is known about the target server; empty when no database was given."""

    server_version_num: int | None = None
    columns: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # The catalog's functions (built-in names, user functions with their bodies);
    # None: not read, so only the plan's own functions are judged.
    functions: FunctionFacts | None = None

    @property
    def from_database(self) -> bool:
        return self.server_version_num is not None


def build_plan(
    sources: Sequence[SqlSource],
    *,
    policy: Policy,
    facts: ServerFacts | None = None,
    revisions: Sequence[Revision] = (),
    from_revisions: Sequence[str] = (),
    to_revision: str | None = None,
) -> Plan:
    facts = facts or ServerFacts()
    basis = analysis_basis(policy, facts)
    analysis = Analysis(
        policy,
        server_version=basis.server_version_num,
        schema=SchemaState.from_catalog(facts.columns),
        reuse_parses=True,
        functions=facts.functions,
    )
    statements: list[Statement] = []
    for source in sources:
        for analysed in analysis.analyse(
            split_statements(source.sql, psql_script=source.psql_script)
        ):
            raw = analysed.raw
            statements.append(
                Statement(
                    index=len(statements),
                    revision=source.revision,
                    source=source.source,
                    line=raw.line,
                    end_line=raw.end_line,
                    text=raw.text,
                    sha256=raw.sha256,
                    fingerprint=raw.fingerprint,
                    kind=analysed.kind,
                    transaction=analysed.transaction,
                    findings=analysed.findings,
                )
            )
    return Plan(
        target=policy.target,
        ruleset=RULESET_VERSION,
        revisions=tuple(revisions),
        statements=tuple(statements),
        basis=basis,
        from_revisions=tuple(from_revisions),
        to_revision=to_revision,
    )


def analysis_basis(policy: Policy, facts: ServerFacts) -> AnalysisBasis:
    """The server version the analysis assumes, and where it came from."""
    if facts.server_version_num is not None:
        version, version_source = facts.server_version_num, "database"
    elif policy.server_version is not None:
        version, version_source = policy.server_version, "config"
    else:
        version, version_source = None, "assumed-worst"
    return AnalysisBasis(
        server_version_num=version,
        server_version_source=version_source,
        schema_source="database+plan" if facts.columns else "plan",
    )


def lint_text(
    text: str,
    source: str = "<stdin>",
    *,
    policy: Policy | None = None,
    facts: ServerFacts | None = None,
) -> Plan:
    """Analyse plain SQL (a file, stdin) as one plan with no revisions."""
    return build_plan(
        [SqlSource(source, text, psql_script=True)], policy=policy or Policy(), facts=facts
    )
