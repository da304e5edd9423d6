"""Migrate: run alembic online (``alembic upgrade REV``) against a database.

Used by dry-run to bring a scratch database to the target database's current
revision before the planned SQL is tried on it. The URL reaches the project's
env.py the same way as in :func:`runner.plan.source.offline_sql`: as
``-x url=...`` and as ``sqlalchemy.url``.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy.exc
from alembic import command
from alembic.util import CommandError

from runner.dryrun.facts import connect
from runner.errors import DatabaseError, SignoffError, SourceError
from runner.pgurl import describe, redact, scrub
from runner.plan.source import alembic_config, load_script, preserve_logging

__all__ = ["upgrade"]


def upgrade(alembic_ini: Path, url: str, revision: str) -> None:
    """Upgrade the database at ``url`` to ``revision`` with the project's env.py.

    Raises :class:`SourceError` when the project cannot be read or its env.py
    fails, :class:`DatabaseError` when the database cannot be reached or a
    migration statement fails. No message contains the password.
    """
    load_script(alembic_ini)  # a broken project is reported before connecting
    connect(url).close()  # "cannot connect to database at host:port/db: ..."
    config = alembic_config(alembic_ini, url=_sqlalchemy_url(url))
    where = describe(url)
    try:
        with preserve_logging():
            command.upgrade(config, revision)
    except SignoffError as exc:
        raise type(exc)(scrub(str(exc), url)) from None
    except CommandError as exc:
        raise SourceError(
            f"cannot upgrade {where} to {revision}: {_one_line(exc, url)}; pass a "
            "revision listed by `alembic history`"
        ) from None
    except sqlalchemy.exc.DBAPIError as exc:
        statement = " ".join((exc.statement or "").split())
        if len(statement) > 120:
            statement = statement[:117] + "..."
        raise DatabaseError(
            f"upgrade of {where} to {revision} failed: {_one_line(exc.orig or exc, url)}"
            + (f" (statement: {scrub(statement, url)})" if statement else "")
            + f"; run `alembic -x url={redact(url)} upgrade {revision}` to reproduce"
        ) from None
    except Exception as exc:
        raise SourceError(
            f"alembic env.py or a revision failed while upgrading {where} to {revision} "
            f"({type(exc).__name__}: {_one_line(exc, url)}); run `alembic upgrade "
            f"{revision}` to reproduce and fix it"
        ) from None


def _sqlalchemy_url(url: str) -> str:
    """Name psycopg 3 as the driver: SQLAlchemy's default for postgresql:// is psycopg2."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def _one_line(exc: BaseException, url: str) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub(text, url)
