"""Scratch databases: a uniquely named database on a server, dropped afterwards.

``scratch_database()`` creates it, yields its URL and drops it whatever
happened in between. Only a database created here is ever dropped.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors, sql

from runner.errors import DatabaseError
from runner.pgurl import database_url, describe

_CONNECT_TIMEOUT_S = 10

_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,40}")


@contextmanager
def scratch_database(server_url: str, *, prefix: str = "signoff_dryrun") -> Iterator[str]:
    """CREATE DATABASE <prefix>_<random hex>, yield its URL, DROP it afterwards.

    The drop happens even when the body raises (WITH (FORCE) on PostgreSQL 13+,
    after terminating leftover sessions on older servers). Only the database
    created here is ever dropped.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"scratch database prefix must match {_PREFIX.pattern}: {prefix!r}")
    name = f"{prefix}_{secrets.token_hex(6)}"
    where = describe(server_url, database=False)
    with _admin_connection(server_url, where) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except errors.InsufficientPrivilege as exc:
            user = conn.info.user
            raise DatabaseError(
                f"role {user} on {where} may not create databases; grant it with "
                f"ALTER ROLE {user} CREATEDB, or point dry-run at a server where it can"
            ) from exc
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot create a scratch database on {where}: {_first_line(exc)}"
            ) from exc
    try:
        yield database_url(server_url, name)
    except BaseException as exc:
        try:
            _drop(server_url, where, name)
        except DatabaseError as drop_exc:
            exc.add_note(str(drop_exc))
        raise
    else:
        _drop(server_url, where, name)


@contextmanager
def _admin_connection(url: str, where: str) -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {where}: {_first_line(exc)}; start the server or "
            "pass the URL of one that answers"
        ) from exc
    with conn:
        yield conn


def _drop(server_url: str, where: str, name: str) -> None:
    with _admin_connection(server_url, where) as conn:
        try:
            if conn.info.server_version >= 130000:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            else:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise DatabaseError(
                f"could not drop the scratch database {name} on {where}: {_first_line(exc)}; "
                f"drop it by hand (DROP DATABASE {name})"
            ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
