"""PostgreSQL connection strings: parsing, naming a server in a message, redaction.

Shared by the runner (plan, dry-run, apply) and the gateway (its state store).
Everything here is pure string work: nothing connects. A connection string is
either a URL (``postgresql://``, ``postgres://``, or SQLAlchemy's
``postgresql+psycopg://`` / ``postgresql+psycopg2://``) or a libpq
``key=value`` string; wherever one is shown to a person its password is not.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runner.errors import DatabaseError

__all__ = [
    "database_url",
    "describe",
    "libpq_conninfo",
    "redact",
    "scrub",
    "to_psycopg_conninfo",
]

_SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "postgresql+psycopg2": "postgresql",
    "postgresql+psycopg2cffi": "postgresql",
    "postgres+psycopg": "postgresql",
    "postgres+psycopg2": "postgresql",
}
_SECRET_PARAMS = {"password", "sslpassword"}
_DEFAULT_PORT = "5432"


def to_psycopg_conninfo(url: str) -> str:
    """A libpq connection URI for a SQLAlchemy-style or libpq PostgreSQL URL.

    Accepts ``postgresql://``, ``postgres://``, ``postgresql+psycopg://`` and
    ``postgresql+psycopg2://``; the driver suffix is dropped.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise DatabaseError(
            f"database URL {redact(url)!r} is not a URL; use postgresql://user@host:5432/dbname"
        )
    libpq_scheme = _SCHEMES.get(scheme.lower())
    if libpq_scheme is None:
        raise DatabaseError(
            f"unsupported database URL scheme {scheme!r} in {redact(url)!r}; use "
            "postgresql://user@host:5432/dbname"
        )
    return f"{libpq_scheme}://{rest}"


def libpq_conninfo(conninfo: str) -> str:
    """A URL in libpq's own spelling; a key=value string as it is."""
    return to_psycopg_conninfo(conninfo) if "://" in conninfo else conninfo


def describe(conninfo: str, *, database: bool = True) -> str:
    """Where a connection string points, for messages: ``host:port/dbname``
    (``host:port`` with ``database=False``). Never the password.

    Host and port fall back to ``PGHOST`` / ``PGPORT`` as libpq's do, so the
    message names the server libpq will really try.
    """
    try:
        params = conninfo_to_dict(libpq_conninfo(conninfo))
    except (psycopg.Error, DatabaseError):
        return "the database server (unparsable connection string)"
    host = str(
        params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    )
    port = str(params.get("port") or os.environ.get("PGPORT") or _DEFAULT_PORT)
    where = f"{host}:{port}"
    if not database:
        return where
    return f"{where}/{params.get('dbname') or params.get('user') or ''}"


def redact(url: str) -> str:
    """``url`` with its password (in the user info or the query) replaced by ***.

    A libpq ``key=value`` string gets the same treatment for its password keys.
    """
    if "://" not in url and "=" in url:
        return _redact_key_value(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    netloc = parts.netloc
    userinfo, at, hostinfo = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key in _SECRET_PARAMS for key, _ in pairs):
            query = urlencode(
                [(key, "***" if key in _SECRET_PARAMS else value) for key, value in pairs],
                safe="*/",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_key_value(conninfo: str) -> str:
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "<unparseable connection string>"
    for key in _SECRET_PARAMS & params.keys():
        params[key] = "***"
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def scrub(text: str, url: str) -> str:
    """``text`` with every spelling of the password in ``url`` replaced by ***."""
    secrets: set[str] = set()
    if "://" not in url:
        with contextlib.suppress(psycopg.Error):
            secrets.update(
                str(v) for k, v in conninfo_to_dict(url).items() if k in _SECRET_PARAMS and v
            )
    else:
        try:
            parts = urlsplit(url)
            if parts.password:
                secrets.add(parts.password)
            secrets.update(v for k, v in parse_qsl(parts.query) if k in _SECRET_PARAMS)
        except ValueError:
            pass
    for secret in list(secrets):
        secrets.update({unquote(secret), quote(secret, safe=""), quote(secret)})
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def database_url(server_url: str, dbname: str) -> str:
    """server_url with its database replaced by dbname (URL or key=value form)."""
    if server_url.startswith(("postgresql://", "postgres://")):
        parts = urllib.parse.urlsplit(server_url)
        query = [
            (k, v)
            for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            if k != "dbname"
        ]
        return urllib.parse.urlunsplit(
            (
                parts.scheme,
                parts.netloc,
                "/" + urllib.parse.quote(dbname, safe=""),
                urllib.parse.urlencode(query, safe="/"),
                parts.fragment,
            )
        )
    return make_conninfo(server_url, dbname=dbname)
