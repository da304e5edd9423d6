"""Read an alembic project: pending revisions and the offline SQL of each.

No subprocess and no database: the project's own ``env.py`` runs in alembic's
offline mode (what ``alembic upgrade --sql`` does), with a custom output
buffer that cuts the emitted SQL into one piece per revision.

Offline output, as alembic writes it with ``transaction_per_migration=True``
(each piece is one ``write()`` call; every one ends with a blank line)::

    BEGIN;
    CREATE TABLE alembic_version (...);      <- only when starting from base
    -- Running upgrade  -> 0d5b4ef5d34c
    CREATE TABLE ...;
    INSERT INTO alembic_version ...;
    COMMIT;
    BEGIN;                                  <- written *before* the next marker
    -- Running upgrade 0d5b4ef5d34c -> c2b722edb006
    ...

A ``BEGIN`` written immediately before a ``-- Running upgrade`` marker opens
that revision's transaction, so it is given to that revision: each revision's
SQL then starts with its own ``BEGIN;`` and ends with its own ``COMMIT;``.
The pieces, concatenated in order, are exactly the whole output.

Every problem is a :class:`runner.errors.SourceError` with one line naming the
thing that is wrong and the fix; a database password never appears in one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, unquote, urlsplit

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, MigrationStep, RevisionStep
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import (
    MultipleHeads,
    RangeNotAncestorError,
    ResolutionError,
    RevisionError,
)
from alembic.util import CommandError

from runner.errors import SourceError

__all__ = [
    "RevisionInfo",
    "RevisionSQL",
    "alembic_config",
    "load_script",
    "offline_sql",
    "pending_revisions",
    "preserve_logging",
]

_MARKER = "-- Running "
_MISSING_DOWN = re.compile(r"Revision (\S+) referenced from .*?-> (\S+)")
_HEAD_TARGETS = ("heads", "head")


@dataclass(frozen=True)
class RevisionInfo:
    """One alembic revision, as read from its file."""

    id: str
    down_revisions: tuple[str, ...]
    message: str
    """The revision's message: first paragraph of its docstring, as alembic shows it."""
    path: str
    """Path of the revision file relative to the alembic script directory."""


@dataclass(frozen=True)
class RevisionSQL:
    """The offline SQL alembic emits for one revision."""

    revision: RevisionInfo
    sql: str
    """Exactly as written to alembic's output buffer (BEGIN/COMMIT included)."""


# --------------------------------------------------------------------------- loading


def load_script(alembic_ini: Path) -> ScriptDirectory:
    """Load the alembic script directory named by ``alembic_ini``.

    Every revision file is imported here, so a broken one is reported now,
    by name, rather than halfway through a plan.
    """
    return _load(alembic_config(alembic_ini, url=None), alembic_ini)


def alembic_config(alembic_ini: Path, url: str | None) -> Config:
    """An alembic Config for ``alembic_ini``, with ``url`` passed as env.py expects.

    ``url`` goes in as ``-x url=...`` (``context.get_x_argument()``) and as the
    ``sqlalchemy.url`` main option; ``None`` leaves both to the project.
    """
    if not alembic_ini.is_file():
        what = "is a directory" if alembic_ini.is_dir() else "does not exist"
        raise SourceError(
            f"{alembic_ini} {what}: pass --alembic-ini with the path of your project's alembic.ini"
        )
    cmd_opts = argparse.Namespace(x=[f"url={url}"]) if url is not None else None
    config = Config(str(alembic_ini), cmd_opts=cmd_opts)
    # Honoured by env.py files that follow alembic's cookbook; keeps an embedded
    # run from reconfiguring the caller's logging.
    config.attributes["configure_logger"] = False
    try:
        script_location = config.get_alembic_option("script_location")
    except Exception as exc:  # configparser errors: the ini itself is malformed
        raise SourceError(
            f"{alembic_ini}: cannot read it ({_one_line(exc)}); fix the ini syntax"
        ) from None
    if not script_location:
        raise SourceError(
            f"{alembic_ini}: no script_location in its [alembic] section; add "
            "`script_location = %(here)s/migrations` (the directory holding env.py "
            "and versions/)"
        )
    if url is not None:
        # configparser interpolates '%': escape it (percent-encoded passwords).
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _load(config: Config, alembic_ini: Path) -> ScriptDirectory:
    try:
        script = ScriptDirectory.from_config(config)
    except CommandError as exc:
        raise SourceError(
            f"{alembic_ini}: {_one_line(exc)}; fix script_location so it names the "
            "directory holding env.py and versions/"
        ) from None
    if not Path(script.dir).is_dir():
        raise SourceError(
            f"{alembic_ini}: script_location {script.dir} is not a directory; fix "
            "script_location so it names the directory holding env.py and versions/"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # Loads and imports every revision file and checks the graph.
            script.revision_map.get_revisions("heads")
            failure: Exception | None = None
        except Exception as exc:
            failure = exc
    for warning in caught:
        missing = _MISSING_DOWN.search(str(warning.message))
        if missing:
            down, rev = missing.groups()
            raise SourceError(
                f"revision {rev} names down_revision {down}, which is not in "
                f"{script.dir}: the revision graph is broken; fix down_revision in that "
                "revision file (or restore the missing revision)"
            )
    for warning in caught:  # anything else alembic warned about stays visible
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if failure is not None:
        _raise_load_error(script, failure)
    return script


def _raise_load_error(script: ScriptDirectory, exc: Exception) -> NoReturn:
    if isinstance(exc, SyntaxError):
        raise SourceError(f"{_syntax_where(script, exc)}: {_syntax_what(exc)}; fix the file")
    if isinstance(exc, RevisionError):
        raise SourceError(
            f"{script.dir}: the revision graph is broken ({_one_line(exc)}); fix "
            "down_revision in the revision files"
        )
    if isinstance(exc, CommandError):
        raise SourceError(f"{script.dir}: {_one_line(exc)}; fix the revision file")
    where = _failing_file(script, exc) or f"a revision file in {script.dir}"
    raise SourceError(
        f"{where}: cannot import it ({type(exc).__name__}: {_one_line(exc)}); fix the revision file"
    )


def _syntax_where(script: ScriptDirectory, exc: SyntaxError) -> str:
    where = _relative(script, exc.filename) if exc.filename else "a revision file"
    return f"{where} line {exc.lineno}" if exc.lineno else where


def _syntax_what(exc: SyntaxError) -> str:
    return f"syntax error ({exc.msg})"


def _failing_file(script: ScriptDirectory, exc: BaseException) -> str | None:
    """The revision file (relative) in which ``exc`` was raised, if any."""
    locations = [Path(loc).resolve() for loc in script._version_locations]
    found: str | None = None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename).resolve()
        if any(path.is_relative_to(loc) for loc in locations):
            found = f"{_relative(script, frame.filename)} line {frame.lineno}"
    return found


def _relative(script: ScriptDirectory, path: str) -> str:
    """The revision file relative to the working directory (the repository root in
    CI, which is what annotations and SARIF locations need), else to the script dir."""
    resolved = Path(path).resolve()
    for base in (Path.cwd(), Path(script.dir)):
        try:
            return str(resolved.relative_to(base.resolve()))
        except ValueError:
            continue
    return path


def _info(script: ScriptDirectory, rev: Script) -> RevisionInfo:
    down = rev.down_revision
    if down is None:
        downs: tuple[str, ...] = ()
    elif isinstance(down, str):
        downs = (down,)
    else:
        downs = tuple(down)
    return RevisionInfo(
        id=rev.revision,
        down_revisions=downs,
        message=(rev.doc or "").strip(),
        path=_relative(script, rev.path),
    )


# --------------------------------------------------------------------------- planning


def pending_revisions(
    script: ScriptDirectory,
    *,
    current: tuple[str, ...],
    target: str = "heads",
) -> list[RevisionInfo]:
    """Revisions an upgrade from ``current`` to ``target`` applies, oldest first.

    ``current=()`` means an empty database (base).
    """
    return [_info(script, rev) for rev in _pending_scripts(script, current, target)]


def _resolve_current(script: ScriptDirectory, current: Sequence[str]) -> tuple[str, ...]:
    resolved: list[str] = []
    for rev_id in current:
        if rev_id in ("base", ""):
            continue
        rev = _get_revision(
            script,
            rev_id,
            "from the database's alembic_version / --from",
            "check out the branch that has it, or pass --from with a revision in `alembic history`",
        )
        resolved.append(rev.revision)
    return tuple(resolved)


def _resolve_target(script: ScriptDirectory, target: str) -> str:
    if target in _HEAD_TARGETS:
        heads = script.get_heads()
        if len(heads) > 1:
            raise SourceError(
                f"multiple heads {', '.join(sorted(heads))}: merge them with "
                "`alembic merge heads` or pass --to REV"
            )
        return "heads"
    if target == "base":
        return target
    if any(ch in target for ch in "+-@:") or target.endswith(("heads", "head")):
        return target  # relative / branch syntax: alembic resolves it below
    return _get_revision(
        script,
        target,
        "--to",
        "pass --to with a revision in `alembic history`, or 'heads'",
    ).revision


def _get_revision(script: ScriptDirectory, rev_id: str, origin: str, fix: str) -> Script:
    try:
        rev = script.get_revision(rev_id)
    except MultipleHeads as exc:
        raise SourceError(
            f"revision '{rev_id}' ({origin}) is ambiguous ({_one_line(exc)}); {fix}"
        ) from None
    except (ResolutionError, CommandError, RevisionError) as exc:
        raise SourceError(
            f"unknown revision '{rev_id}' ({origin}): {_one_line(exc)} in {script.dir}; {fix}"
        ) from None
    if rev is None:
        raise SourceError(f"unknown revision '{rev_id}' ({origin}) in {script.dir}; {fix}")
    return rev


def _is_revision_id(script: ScriptDirectory, rev_id: str) -> bool:
    try:
        return script.revision_map.get_revision(rev_id) is not None
    except (RevisionError, CommandError):
        return False


def _pending_scripts(script: ScriptDirectory, current: Sequence[str], target: str) -> list[Script]:
    heads = _resolve_current(script, current)
    destination = _resolve_target(script, target)
    start = " ".join(heads) or "base"
    try:
        revs = list(script.iterate_revisions(destination, heads, implicit_base=True))
    except MultipleHeads as exc:
        raise SourceError(
            f"multiple heads {', '.join(sorted(exc.heads))}: merge them with "
            "`alembic merge heads` or pass --to REV"
        ) from None
    except RangeNotAncestorError:
        raise SourceError(
            f"current revision {start} is not an ancestor of target {target}: signoff "
            "plans upgrades only; pass --to a revision that descends from "
            f"{start} (see `alembic history`)"
        ) from None
    except ResolutionError as exc:
        raise SourceError(
            f"unknown revision '{exc.argument}' (--to): not in {script.dir}; pass --to "
            "with a revision in `alembic history`, or 'heads'"
        ) from None
    except (RevisionError, CommandError) as exc:
        raise SourceError(
            f"cannot plan an upgrade from {start} to {target}: {_one_line(exc)}; pass "
            "--to a revision that descends from the current one"
        ) from None
    if (
        not revs
        and heads
        and destination not in ("heads", *heads)
        and (destination == "base" or _is_revision_id(script, destination))
    ):
        # alembic treats "upgrade to an older revision" as a silent no-op.
        raise SourceError(
            f"the database is at {start}, which is already past {target}: there is "
            "nothing to upgrade and signoff does not downgrade; pass --to heads or "
            f"a revision that descends from {start}"
        )
    revs.reverse()  # alembic iterates newest first
    scripts: list[Script] = []
    for rev in revs:
        if not isinstance(rev, Script):  # pragma: no cover - alembic always yields Scripts
            raise SourceError(f"revision {rev.revision} has no script file in {script.dir}")
        scripts.append(rev)
    return scripts


# --------------------------------------------------------------------------- offline SQL


def offline_sql(
    alembic_ini: Path,
    *,
    current: tuple[str, ...],
    target: str = "heads",
    url: str | None = None,
) -> list[RevisionSQL]:
    """The offline SQL of every pending revision, oldest first.

    ``url`` (if any) reaches env.py as ``-x url=...`` and as ``sqlalchemy.url``;
    offline mode uses it only to pick the dialect, it never connects.
    """
    try:
        return _offline_sql(alembic_ini, current=current, target=target, url=url)
    except SourceError as exc:
        if url is None:
            raise
        message = _scrub(str(exc), url)
        if message == str(exc):
            raise
        raise SourceError(message) from None


def _offline_sql(
    alembic_ini: Path, *, current: tuple[str, ...], target: str, url: str | None
) -> list[RevisionSQL]:
    config = alembic_config(alembic_ini, url)
    script = _load(config, alembic_ini)
    scripts = _pending_scripts(script, current, target)
    if not scripts:
        return []
    infos = [_info(script, rev) for rev in scripts]
    steps: list[RevisionStep] = [
        MigrationStep.upgrade_from_script(script.revision_map, rev) for rev in scripts
    ]
    heads = _resolve_current(script, current)
    calls = 0

    def upgrade(rev: Any, context: MigrationContext) -> list[RevisionStep]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise SourceError(
                f"{_env_py(script)} runs the migrations more than once (a multi-database "
                "env.py?); signoff plans one database: make env.py call "
                "context.run_migrations() once"
            )
        if set(rev) != set(heads):  # fail closed: alembic must start where we planned
            raise SourceError(
                f"alembic started offline mode at {', '.join(rev) or 'base'}, not at "
                f"{', '.join(heads) or 'base'}; refusing to plan: check env.py"
            )
        return steps

    buffer = _RevisionSplitter(infos)
    starting_rev: Any
    if not heads:
        starting_rev = None
    elif len(heads) == 1:
        starting_rev = heads[0]
    else:
        starting_rev = list(heads)
    env_py = _env_py(script)
    with (
        preserve_logging(),
        EnvironmentContext(
            config,
            script,
            fn=upgrade,
            as_sql=True,
            starting_rev=starting_rev,
            destination_rev=target,
            output_buffer=buffer,
        ),
    ):
        try:
            script.run_env()
        except SourceError:
            raise
        except SyntaxError as exc:
            raise SourceError(
                f"{_syntax_where(script, exc)}: {_syntax_what(exc)}; fix the file"
            ) from None
        except Exception as exc:
            where = _failing_file(script, exc) or env_py
            raise SourceError(
                f"{where}: failed in alembic offline mode ({type(exc).__name__}: "
                f"{_one_line(exc)}); `alembic upgrade {target} --sql` shows the same "
                "failure, fix it there"
            ) from None
    if calls == 0:
        raise SourceError(
            f"{env_py} never called context.run_migrations() in offline mode; make "
            "run_migrations_offline() call it (see alembic's generic env.py)"
        )
    return buffer.result()


def _env_py(script: ScriptDirectory) -> str:
    return str(Path(script.dir) / "env.py")


class _RevisionSplitter(io.StringIO):
    """Output buffer that files each write under the revision being emitted."""

    def __init__(self, pending: list[RevisionInfo]) -> None:
        super().__init__()
        self._pending = pending
        self._chunks: list[list[str]] = [[] for _ in pending]
        self._seen = 0  # number of "-- Running upgrade" markers seen

    def write(self, s: str, /) -> int:
        if not isinstance(s, str):
            raise SourceError(
                "env.py sets output_encoding: signoff needs text output; remove "
                "output_encoding from context.configure()"
            )
        if s.startswith(_MARKER):
            self._switch(s)
        else:
            self._chunks[max(self._seen - 1, 0)].append(s)
        return super().write(s)

    def _switch(self, marker: str) -> None:
        line = marker.strip()
        if self._seen >= len(self._pending):
            raise SourceError(
                f"alembic emitted an unexpected extra step {line!r} after the "
                f"{len(self._pending)} planned revision(s); refusing to plan (is env.py "
                "running migrations twice?)"
            )
        expected = self._pending[self._seen]
        want = f"{_MARKER}upgrade {', '.join(expected.down_revisions)} -> {expected.id}"
        if line != want:
            raise SourceError(
                f"alembic emitted {line!r} where {want!r} was planned ({expected.path}); "
                "refusing to plan: check env.py and the revision graph"
            )
        if self._seen > 0:
            previous = self._chunks[self._seen - 1]
            # The BEGIN just written opens this revision's transaction.
            if previous and previous[-1].strip().upper() in ("BEGIN;", "BEGIN"):
                self._chunks[self._seen].append(previous.pop())
        self._seen += 1
        self._chunks[self._seen - 1].append(marker)

    def result(self) -> list[RevisionSQL]:
        if self._seen != len(self._pending):
            missing = self._pending[self._seen] if self._seen < len(self._pending) else None
            raise SourceError(
                f"alembic emitted {self._seen} of {len(self._pending)} planned revision(s)"
                + (f" (missing {missing.id}, {missing.path})" if missing else "")
                + "; refusing to plan: check that env.py runs all migrations"
            )
        return [
            RevisionSQL(revision=info, sql="".join(chunks))
            for info, chunks in zip(self._pending, self._chunks, strict=True)
        ]


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def preserve_logging() -> Iterator[None]:
    """Undo what an env.py's ``fileConfig()`` does to the process's logging.

    Levels, handlers, ``propagate`` and ``disabled`` of every logger are put
    back as they were; loggers created meanwhile are reset to defaults.
    """
    manager = logging.Logger.manager
    before: dict[str, tuple[bool, int, list[logging.Handler], bool]] = {}
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for lg in loggers:
        before[lg.name] = (lg.disabled, lg.level, list(lg.handlers), lg.propagate)
    try:
        yield
    finally:
        root = logging.getLogger()
        current = [root] + [
            lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger)
        ]
        for lg in current:
            disabled, level, handlers, propagate = before.get(
                lg.name, (False, logging.NOTSET, [], True)
            )
            lg.disabled = disabled
            lg.setLevel(level)
            lg.handlers = handlers
            lg.propagate = propagate


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _scrub(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (in any spelling) replaced by ***."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if not password:
        return text
    for form in {password, unquote(password), quote(password, safe=""), quote(password)}:
        if form:
            text = text.replace(form, "***")
    return text
