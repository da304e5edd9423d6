"""The ``signoff`` command line: options in, one library call, a renderer out.

Exit status: 0 nothing needs approval; 1 findings at or above --fail-on (or a
denied finding, or a failed dry-run statement); 2 usage, configuration or
environment error; 3 the plan needs a reviewer's approval.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from runner import __version__, command
from runner.config import Settings, load_settings, parse_fail_on, parse_version
from runner.errors import SignoffError
from runner.plan import render
from runner.plan.model import Plan

P = ParamSpec("P")
R = TypeVar("R")


class State:
    def __init__(self, debug: bool, config: Path | None) -> None:
        self.debug = debug
        self.config = config

    def settings(self, search_from: Path) -> Settings:
        return load_settings(self.config, search_from=search_from)


def _fail(message: str, status: int = command.EXIT_USAGE) -> NoReturn:
    click.echo(f"signoff: error: {message}", err=True)
    sys.exit(status)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """One line and exit 2 for anything wrong with input or environment.

    Tracebacks only with --debug: a CI log should say what to fix, and a
    traceback's locals are where secrets leak.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = click.get_current_context()
        debug = bool(ctx.find_object(State) and ctx.find_object(State).debug)  # type: ignore[union-attr]
        try:
            return func(*args, **kwargs)
        except SignoffError as error:
            if debug:
                raise
            _fail(str(error), error.exit_code)
        except (KeyboardInterrupt, click.exceptions.Exit, click.ClickException):
            raise
        except Exception as error:
            if debug:
                raise
            _fail(
                f"internal error ({type(error).__name__}); rerun with --debug and report it",
                command.EXIT_USAGE,
            )

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="signoff")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="signoff.toml or pyproject.toml to use (default: the nearest one).",
)
@click.pass_context
def main(ctx: click.Context, debug: bool, config: Path | None) -> None:
    """Signoff: attributed, approved PostgreSQL migrations from CI."""
    ctx.obj = State(debug, config)


def _format_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(render.FORMATS),
        default="text",
        show_default=True,
        help="Output format.",
    )(func)


def _fail_on_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--fail-on",
        type=click.Choice(["info", "warning", "error", "none"]),
        default=None,
        help="Exit 1 on findings at or above this severity (default: config, else none).",
    )(func)


def _source_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--alembic-ini",
            type=click.Path(path_type=Path, dir_okay=False),
            default=Path("alembic.ini"),
            show_default=True,
            help="The alembic project's ini file.",
        ),
        click.option(
            "--database-url",
            envvar="SIGNOFF_DATABASE_URL",
            help="Target database (its alembic_version, server version and catalog). "
            "Env: SIGNOFF_DATABASE_URL.",
        ),
        click.option("--from", "from_revision", help="Revision the target is at (default: base)."),
        click.option("--to", "to_revision", help="Revision to plan up to (default: heads)."),
        click.option("--target", help="Target database name recorded in the plan hash."),
        click.option(
            "--postgres-version",
            help="Server version to assume without a database, e.g. 15 or 14.2.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(state: State, anchor: Path, fail_on: str | None, version: str | None) -> Settings:
    settings = state.settings(anchor)
    policy = settings.policy
    if fail_on is not None:
        policy = replace(policy, fail_on=parse_fail_on(fail_on, "--fail-on"))
    if version is not None:
        policy = replace(policy, server_version=parse_version(version, "--postgres-version"))
    return replace(settings, policy=policy)


def _emit(plan: Plan, fmt: str, output: Path | None, *, all_statements: bool) -> None:
    rendered = render.render(plan, fmt, all_statements=all_statements)
    if output is not None:
        output.write_text(rendered, encoding="utf-8")
        click.echo(f"{render.verdict(plan)}; wrote {output}", err=True)
    else:
        click.echo(rendered, nl=False)


@main.command()
@_source_options
@_format_option
@_fail_on_option
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
@handle_errors
def plan(
    state: State,
    alembic_ini: Path,
    database_url: str | None,
    from_revision: str | None,
    to_revision: str | None,
    target: str | None,
    postgres_version: str | None,
    fmt: str,
    fail_on: str | None,
    output: Path | None,
) -> None:
    """Plan the pending alembic migrations and analyse every statement."""
    settings = _settings(state, alembic_ini.parent, fail_on, postgres_version)
    result = command.plan(
        alembic_ini,
        settings,
        database_url=database_url,
        from_revision=from_revision,
        to_revision=to_revision,
        target=target,
    )
    _emit(result, fmt, output, all_statements=True)
    sys.exit(command.exit_status(result, settings.policy.fail_on))


@main.command()
@click.argument("files", nargs=-1, required=True)
@_format_option
@_fail_on_option
@click.option("--target", help="Target database name recorded in the plan hash.")
@click.option("--postgres-version", help="Server version to assume, e.g. 15 or 14.2.")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
@handle_errors
def lint(
    state: State,
    files: tuple[str, ...],
    fmt: str,
    fail_on: str | None,
    target: str | None,
    postgres_version: str | None,
    output: Path | None,
) -> None:
    """Analyse plain SQL files (- for stdin) with the same rules as plan."""
    settings = _settings(state, Path.cwd(), fail_on, postgres_version)
    result = command.lint(files, settings, target=target)
    _emit(result, fmt, output, all_statements=False)
    sys.exit(command.exit_status(result, settings.policy.fail_on))


@main.command()
@click.argument("rule_id", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text")
@handle_errors
def rules(rule_id: str | None, fmt: str) -> None:
    """List the rule catalogue, or explain one rule."""
    selected = command.rules(rule_id)
    if fmt == "json":
        click.echo(
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
                    }
                    for r in selected
                ],
                indent=2,
            )
        )
    elif fmt == "markdown":
        click.echo(render.rules_table(selected), nl=False)
    elif rule_id is None:
        for r in selected:
            click.echo(f"{r.id}  {r.name:<44} {r.category.value:<13} {r.summary}")
    else:
        r = selected[0]
        click.echo(f"{r.id} {r.name} ({r.category.value}, {r.severity.value})\n")
        click.echo(f"{r.summary}\n")
        click.echo(f"Why: {r.rationale}\n")
        click.echo(f"Safer: {r.safer}\n")
        click.echo("Flags, for example:")
        for example in r.triggers[:3]:
            click.echo("    " + example.sql.replace("\n", "\n    "))
        click.echo("Does not flag, for example:")
        for example in r.passes[:3]:
            click.echo("    " + example.sql.replace("\n", "\n    "))


@main.command("dry-run")
@_source_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
@handle_errors
def dry_run(
    state: State,
    alembic_ini: Path,
    database_url: str | None,
    from_revision: str | None,
    to_revision: str | None,
    target: str | None,
    postgres_version: str | None,
    fmt: str,
) -> None:
    """Apply the pending plan to a scratch database (embedded PostgreSQL by default)."""
    settings = _settings(state, alembic_ini.parent, None, postgres_version)
    if database_url is None:
        click.echo("signoff: starting an embedded PostgreSQL for the dry run ...", err=True)
    report = command.dry_run(
        alembic_ini,
        settings,
        database_url=database_url,
        from_revision=from_revision,
        to_revision=to_revision,
        target=target,
    )
    click.echo(render_dry_run(report, fmt), nl=False)
    sys.exit(command.EXIT_FINDINGS if report.failed is not None else command.EXIT_OK)


def render_dry_run(report: command.DryRunReport, fmt: str) -> str:
    statements = {s.index: s for s in report.plan.statements}
    if fmt == "json":
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
            f"{render.first_line(statement)}"
        )
        if not statement.is_transaction_control:
            out.append(f"{'':>38}locks: {locks}")
        for finding in statement.findings:
            out.append(f"{'':>38}{render.finding_line(finding)}")
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
            f"plan verdict: {render.verdict(report.plan)}."
        )
    return "\n".join(out) + "\n"


def _gateway_commands() -> None:
    from runner.gateway.cli import gateway

    main.add_command(gateway)


_gateway_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
