"""The gateway's state store: sessions, seen token ids, grants and the audit chain.

``open_store(url)`` picks the backend by URL:

* ``sqlite:///abs/path.db`` (or ``sqlite:///:memory:``): sessions, seen token
  ids and grants in one SQLite file (``sqlite.py``), ``synchronous=NORMAL``
  unless ``?synchronous=FULL`` is given, a busy timeout (``?busy_timeout=<ms>``,
  default 5000); the audit chain in the append-only journal beside it,
  ``<path>.audit.jsonl`` (``journal.py`` says why a file and what is in it).
* ``postgresql://...`` (or ``postgres://``): psycopg 3 with a pool of autocommit
  connections (``postgres.py``); several gateway processes share every table and
  ONE audit chain (the ``audit`` table).

Both run the same statements (``tables.py``) through the same methods
(``base.py``) and chain entries with the same code (runner/audit/chain.py). The
schema is created on open (idempotent, versioned in ``schema_version``; SQLite
schema 2 moved the ``audit`` table's rows into the journal and dropped it). Audit
``data`` is stored as the exact canonical JSON the entry's hash was taken over, and
``ts`` as the exact RFC 3339 string, so re-reading an entry gives a body whose hash
verifies. Only SCRAM verifiers are stored, never a session secret; no exception
message carries a URL or secret.
"""

from __future__ import annotations

import urllib.parse

from runner.audit.chain import GENESIS_HASH as GENESIS_HASH
from runner.audit.chain import build_entries as build_entries
from runner.audit.chain import canonical_data as canonical_data
from runner.audit.chain import chain_rows as _chain_rows  # tests/native/test_speedups.py
from runner.audit.chain import now_rfc3339 as _now_rfc3339
from runner.audit.chain import parse_rfc3339 as _from_rfc3339
from runner.audit.chain import rfc3339 as rfc3339
from runner.gateway.model import StateStore
from runner.gateway.store.journal import JOURNAL_SUFFIX as JOURNAL_SUFFIX
from runner.gateway.store.postgres import POSTGRES_SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION
from runner.gateway.store.postgres import PostgresStore as PostgresStore
from runner.gateway.store.sqlite import SQLITE_SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from runner.gateway.store.sqlite import SqliteStore as SqliteStore
from runner.gateway.store.tables import StoreError as StoreError

__all__ = [
    "GENESIS_HASH",
    "JOURNAL_SUFFIX",
    "POSTGRES_SCHEMA_VERSION",
    "SQLITE_SCHEMA_VERSION",
    "PostgresStore",
    "SqliteStore",
    "StoreError",
    "_chain_rows",
    "_from_rfc3339",
    "_now_rfc3339",
    "build_entries",
    "canonical_data",
    "open_store",
    "rfc3339",
]


def open_store(url: str, *, pool_size: int = 10) -> StateStore:
    """The store a URL names: ``sqlite:///abs/path.db``, ``sqlite:///:memory:`` or
    ``postgresql://...``. Errors never repeat the URL (it may hold a password)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        return _open_sqlite(url)
    if scheme in {"postgresql", "postgres"}:
        return PostgresStore(url, pool_size=pool_size)
    raise StoreError(
        "the state store URL must start with sqlite:/// or postgresql://"
        + (f", not {scheme}:" if scheme else "")
    )


def _open_sqlite(url: str) -> SqliteStore:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc:
        raise StoreError(
            "a sqlite state store URL has no host: sqlite:///abs/path.db or sqlite:///:memory:"
        )
    path = urllib.parse.unquote(parts.path)
    if path == "/:memory:":
        path = ":memory:"
    elif not path.startswith("/") or not path.strip("/"):
        raise StoreError("a sqlite state store URL needs an absolute path: sqlite:///abs/path.db")
    else:
        # sqlite:////abs/path.db (the SQLAlchemy spelling) names the same file: one
        # slash, so messages and the journal's name show the path as written elsewhere.
        path = "/" + path.lstrip("/")
    options = dict(urllib.parse.parse_qsl(parts.query))
    unknown = sorted(set(options) - {"synchronous", "busy_timeout"})
    if unknown:
        raise StoreError(
            f"unknown sqlite state store option(s) {', '.join(unknown)}; "
            "known: synchronous, busy_timeout"
        )
    try:
        busy_timeout = int(options.get("busy_timeout", "5000"))
    except ValueError as exc:
        raise StoreError("sqlite busy_timeout must be a number of milliseconds") from exc
    return SqliteStore(
        path, synchronous=options.get("synchronous", "NORMAL"), busy_timeout_ms=busy_timeout
    )
