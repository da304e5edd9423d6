"""The ``signoff`` command line: options in, one library call, a renderer out.

Exit status: 0 nothing needs approval; 1 findings at or above --fail-on (or a
denied finding, or a failed dry-run statement); 2 usage, configuration or
environment error; 3 the plan needs a reviewer's approval.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import click

from runner import __version__, command
from runner.cliutil import State, fail_on_option, handle_errors, resolve_settings
from runner.plan import render
from runner.plan.model import Plan


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
@fail_on_option
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
    settings = resolve_settings(state, alembic_ini.parent, fail_on, postgres_version)
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
@fail_on_option
@click.option("--target", help="Target database name recorded in the plan hash.")
@click.option("--postgres-version", help="Server version to assume, e.g. 15 or 14.2.")
@click.option("--database-url", help="Read the server version and column types from it.")
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False), help="signoff.toml")
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
    database_url: str | None,
    config: Path | None,
    output: Path | None,
) -> None:
    """Analyse plain SQL files (- for stdin) with the same rules as plan."""
    state = State(state.debug, config) if config is not None else state
    settings = resolve_settings(state, Path.cwd(), fail_on, postgres_version)
    status, verdict = command.lint_to(
        files, settings, fmt, output, target=target, database_url=database_url
    )
    if output is not None:
        click.echo(f"{verdict}; wrote {output}", err=True)
    sys.exit(status)


@main.command()
@click.argument("rule_id", required=False)
@click.option("--format", "fmt", type=click.Choice(render.RULES_FORMATS), default="text")
@handle_errors
def rules(rule_id: str | None, fmt: str) -> None:
    """List the rule catalogue, or explain one rule."""
    selected = command.rules(rule_id)
    click.echo(render.rule_catalogue(selected, fmt, explain=rule_id is not None), nl=False)


@main.command("dry-run")
@_source_options
@click.option("--format", "fmt", type=click.Choice(render.DRY_RUN_FORMATS), default="text")
@click.option(
    "--bundle-dir",
    envvar="SIGNOFF_BUNDLE_DIR",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("signoff-audit"),
    show_default=True,
    help="Where the dry-run's (unsigned) audit bundle is written.",
)
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
    bundle_dir: Path,
) -> None:
    """Apply the pending plan to a scratch database (embedded PostgreSQL by default)."""
    settings = resolve_settings(state, alembic_ini.parent, None, postgres_version)
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
    click.echo(render.dry_run(report, fmt), nl=False)
    from runner.evidence import dry_run_bundle

    runs = [dataclasses.asdict(run) for run in report.runs]
    path = dry_run_bundle(report.plan, runs, bundle_dir)
    click.echo(f"signoff: unsigned audit bundle (dry-run, no gateway): {path}", err=True)
    sys.exit(command.EXIT_FINDINGS if report.failed is not None else command.EXIT_OK)


class _Commands(MutableMapping[str, click.Command]):
    """``main``'s subcommands, the ones beyond the analysis imported when first asked
    for: ``signoff lint`` and ``plan`` then start without loading the gateway, the
    audit bundle's cryptography or psycopg (most of the start-up time otherwise)."""

    def __init__(
        self, loaded: MutableMapping[str, click.Command], lazy: dict[str, tuple[str, str]]
    ) -> None:
        self._loaded = dict(loaded)
        self._lazy = dict(lazy)  # name -> (module, attribute)

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded and name in self._lazy:
            module, attribute = self._lazy.pop(name)
            command_ = getattr(importlib.import_module(module), attribute)
            self._loaded[name] = command_
        return self._loaded[name]

    def __setitem__(self, name: str, value: click.Command) -> None:
        self._lazy.pop(name, None)
        self._loaded[name] = value

    def __delitem__(self, name: str) -> None:
        if self._lazy.pop(name, None) is None:
            del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*self._loaded, *self._lazy])

    def __len__(self) -> int:
        return len(self._loaded) + len(self._lazy)


main.commands = _Commands(
    main.commands,
    {
        "gateway": ("runner.gateway.cli", "gateway"),
        "audit": ("runner.cli_audit", "audit"),
        "apply": ("runner.cli_ci", "apply_command"),
        "diff": ("runner.cli_ci", "diff_command"),
        "demo": ("runner.cli_demo", "demo_command"),
    },
)

if __name__ == "__main__":  # pragma: no cover
    main()
