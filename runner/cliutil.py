"""What every ``signoff`` command shares: the state the group passes down, the
one-line error handling, and the options and settings more than one module uses."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from runner import command
from runner.config import Settings, load_settings, parse_fail_on, parse_version
from runner.errors import SignoffError

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


def _closed_pipe() -> NoReturn:
    """The reader went away (``signoff rules | head -1``): end quietly, as Unix tools
    do, with the status of a process ended by SIGPIPE, and keep Python from
    complaining again when it flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(128 + signal.SIGPIPE)


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
        except BrokenPipeError:
            _closed_pipe()
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


def fail_on_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--fail-on",
        type=click.Choice(["info", "warning", "error", "none"]),
        default=None,
        help="Exit 1 on findings at or above this severity (default: config, else none).",
    )(func)


def resolve_settings(
    state: State, anchor: Path, fail_on: str | None, version: str | None
) -> Settings:
    settings = state.settings(anchor)
    policy = settings.policy
    if fail_on is not None:
        policy = replace(policy, fail_on=parse_fail_on(fail_on, "--fail-on"))
    if version is not None:
        policy = replace(policy, server_version=parse_version(version, "--postgres-version"))
    return replace(settings, policy=policy)
