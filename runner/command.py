"""One public function per CLI verb, alembic-style: options in, a result out.

Nothing here parses arguments or prints; ``runner.cli`` does that. This is the
seam where the pure core (``runner.plan``) meets the edges (alembic's script
directory, the database, the embedded server).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

from runner.config import Settings
from runner.errors import SignoffError, SourceError
from runner.plan.build import ServerFacts, SqlSource, build_plan
from runner.plan.model import Decision, Plan, Revision, Severity
from runner.plan.rules import catalogue
from runner.plan.rules.base import Rule

if TYPE_CHECKING:
    from runner.dryrun.executor import StatementRun
    from runner.dryrun.facts import DatabaseFacts
    from runner.plan.source import RevisionSQL

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_NEEDS_APPROVAL = 3


def exit_status(plan: Plan, fail_on: Severity | None) -> int:
    """0 nothing needs approval; 1 denied or findings at/above fail_on; 3 needs approval."""
    if plan.denied:
        return EXIT_FINDINGS
    if fail_on is not None:
        for _, finding in plan.findings:
            if finding.decision is Decision.ADVISORY:
                continue
            if finding.severity.rank >= fail_on.rank:
                return EXIT_FINDINGS
    if plan.needs_approval:
        return EXIT_NEEDS_APPROVAL
    return EXIT_OK


def _target(settings: Settings, target: str | None, database_url: str | None) -> Settings:
    """The plan's target: --target, else the config's, else the URL's database name."""
    name = target
    if name is None and settings.policy.target == "default" and database_url:
        name = urlsplit(database_url).path.lstrip("/") or None
    if name is None:
        return settings
    return replace(settings, policy=replace(settings.policy, target=name))


def plan(
    alembic_ini: Path,
    settings: Settings,
    *,
    database_url: str | None = None,
    from_revision: str | None = None,
    to_revision: str | None = None,
    target: str | None = None,
) -> Plan:
    """The pending plan of an alembic project.

    With a database URL, the pending revisions start at its ``alembic_version``
    and the analysis knows its server version and catalog; without one,
    ``from_revision`` (default: base) says where the target is.
    """
    from runner.dryrun.facts import read_facts
    from runner.plan.source import offline_sql

    if database_url and from_revision:
        raise SignoffError(
            "--from and --database-url both say where the target is; give one of them"
        )
    settings = _target(settings, target, database_url)
    facts = read_facts(database_url) if database_url else None
    current = facts.current_heads if facts else _revisions_of(from_revision)
    to = to_revision or "heads"
    chunks = offline_sql(alembic_ini, current=current, target=to, url=database_url)
    return _plan_of(chunks, settings, facts, current, to)


def _plan_of(
    chunks: Sequence[RevisionSQL],
    settings: Settings,
    facts: DatabaseFacts | None,
    current: tuple[str, ...],
    to: str,
) -> Plan:
    return build_plan(
        [SqlSource(f"revision {c.revision.id}", c.sql, c.revision.id) for c in chunks],
        policy=settings.policy,
        facts=ServerFacts(facts.server_version_num, facts.columns, facts.functions)
        if facts
        else None,
        revisions=[
            Revision(c.revision.id, c.revision.down_revisions, c.revision.message, c.revision.path)
            for c in chunks
        ],
        from_revisions=current,
        to_revision=to,
    )


def _revisions_of(value: str | None) -> tuple[str, ...]:
    if value is None or value == "base":
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


def lint(
    paths: Sequence[str],
    settings: Settings,
    *,
    target: str | None = None,
    database_url: str | None = None,
) -> Plan:
    """Analyse plain SQL files (``-`` is stdin, psql scripts) in order, as one plan."""
    settings = _target(settings, target, database_url)
    facts = _lint_facts(database_url)
    sources = []
    for path in paths:
        with _opened(path) as stream:
            sources.append(SqlSource(_name(path), _read(path, stream), psql_script=True))
    return build_plan(sources, policy=settings.policy, facts=facts)


def lint_to(
    paths: Sequence[str],
    settings: Settings,
    fmt: str,
    output: Path | None = None,
    *,
    target: str | None = None,
    database_url: str | None = None,
) -> tuple[int, str]:
    """Lint and write the report in ``fmt`` to ``output`` (None: stdout).

    Returns the exit status and the verdict. Text and JSON are streamed
    (runner.plan.stream): read, analysed and written statement by statement,
    in memory bounded whatever the size; the other formats render a whole plan.
    """
    from runner.plan import render, stream

    if fmt not in stream.STREAM_FORMATS:
        plan = lint(paths, settings, target=target, database_url=database_url)
        _write(output, render.render(plan, fmt, all_statements=False))
        return exit_status(plan, settings.policy.fail_on), render.verdict(plan)
    settings = _target(settings, target, database_url)
    facts = _lint_facts(database_url)
    with ExitStack() as stack:
        # Every file is opened before anything is written: a wrong path fails first.
        sources = [(_name(p), _DecodedStream(p, stack.enter_context(_opened(p)))) for p in paths]
        out = sys.stdout if output is None else stack.enter_context(_output_file(output))
        try:
            summary = stream.lint_stream(
                sources,
                stream.sink_for(fmt, out),
                policy=settings.policy,
                facts=facts,
            )
        finally:
            out.flush()
    fail_on = settings.policy.fail_on
    if summary.denied or (fail_on is not None and summary.worst_severity_rank >= fail_on.rank):
        return EXIT_FINDINGS, summary.verdict()
    return (EXIT_NEEDS_APPROVAL if summary.needs_approval else EXIT_OK), summary.verdict()


def _lint_facts(database_url: str | None) -> ServerFacts | None:
    """lint with a database knows its server version and catalog, as plan does."""
    if not database_url:
        return None
    from runner.dryrun.facts import read_facts

    facts = read_facts(database_url)
    return ServerFacts(facts.server_version_num, facts.columns, facts.functions)


def _name(path: str) -> str:
    return "<stdin>" if path == "-" else path


@contextmanager
def _opened(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdin
        return
    try:
        # Universal newlines, as Path.read_text: what the plan hash is taken over.
        file = open(path, encoding="utf-8")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file; pass SQL files or - for stdin") from None
    except IsADirectoryError:
        raise SourceError(f"{path} is a directory; pass the .sql files in it") from None
    with file:
        yield file


def _read(path: str, stream: IO[str]) -> str:
    try:
        return stream.read()
    except UnicodeDecodeError:
        raise SourceError(f"{_name(path)}: not UTF-8 text; save it as UTF-8") from None


class _DecodedStream:
    """A text stream whose decoding error names the file."""

    def __init__(self, path: str, stream: IO[str]) -> None:
        self.path, self.stream = path, stream

    def read(self, size: int = -1, /) -> str:
        try:
            return self.stream.read(size)
        except UnicodeDecodeError:
            raise SourceError(f"{_name(self.path)}: not UTF-8 text; save it as UTF-8") from None


@contextmanager
def _output_file(path: Path) -> Iterator[IO[str]]:
    """The report file, removed again when the lint fails half-way."""
    with path.open("w", encoding="utf-8") as file:
        try:
            yield file
        except BaseException:
            file.close()
            path.unlink(missing_ok=True)
            raise


def _write(output: Path | None, text: str) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def rules(rule_id: str | None = None) -> list[Rule]:
    catalogue_ = catalogue()
    if rule_id is None:
        return list(catalogue_.values())
    key = rule_id.upper()
    if key not in catalogue_:
        raise SignoffError(f"no rule {rule_id!r}; `signoff rules` lists them all")
    return [catalogue_[key]]


@dataclass(frozen=True)
class DryRunReport:
    plan: Plan
    runs: tuple[StatementRun, ...]
    failed: StatementRun | None
    server: str  # redacted URL of the server the scratch database lived on
    embedded: bool
    migrated_to: tuple[str, ...]


def dry_run(
    alembic_ini: Path,
    settings: Settings,
    *,
    database_url: str | None = None,
    from_revision: str | None = None,
    to_revision: str | None = None,
    target: str | None = None,
) -> DryRunReport:
    """Apply the pending plan to a scratch database, then drop it.

    The scratch database is created on ``database_url``'s server (or on an
    embedded PostgreSQL), brought to the target's current revision with alembic,
    and the plan's statements are run exactly as apply will run them. The
    target's own data is never touched.
    """
    from runner.dryrun import migrate
    from runner.dryrun.executor import execute_plan
    from runner.dryrun.facts import read_facts
    from runner.dryrun.scratch import scratch_database
    from runner.dryrun.server import embedded_server_url
    from runner.pgurl import redact
    from runner.plan.source import offline_sql

    if database_url and from_revision:
        raise SignoffError(
            "--from and --database-url both say where the target is; give one of them"
        )
    settings = _target(settings, target, database_url)
    target_facts = read_facts(database_url) if database_url else None
    current = target_facts.current_heads if target_facts else _revisions_of(from_revision)
    server = database_url or embedded_server_url()
    to = to_revision or "heads"
    with scratch_database(server) as scratch_url:
        for head in current:
            migrate.upgrade(alembic_ini, scratch_url, head)
        scratch_facts = read_facts(scratch_url)
        facts = target_facts or scratch_facts
        chunks = offline_sql(alembic_ini, current=current, target=to, url=scratch_url)
        the_plan = _plan_of(chunks, settings, facts, current, to)
        result = execute_plan(scratch_url, the_plan, lock_timeout_ms=settings.lock_timeout_ms)
    return DryRunReport(
        plan=the_plan,
        runs=tuple(result.runs),
        failed=result.failed,
        server=redact(server),
        embedded=database_url is None,
        migrated_to=current,
    )
