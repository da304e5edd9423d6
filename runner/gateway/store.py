"""The gateway's state store: sessions, seen token ids, grants and the audit chain.

``open_store(url)`` picks the backend by URL:

* ``sqlite:///abs/path.db`` (or ``sqlite:///:memory:``): sessions, seen token
  ids and grants in one SQLite file in WAL mode, ``synchronous=NORMAL`` unless
  ``?synchronous=FULL`` is given, a busy timeout (``?busy_timeout=<ms>``,
  default 5000). One connection guarded by a lock, so every method is safe from
  several threads; write transactions are ``BEGIN IMMEDIATE`` so several
  processes on one file are safe too. The audit chain is NOT in the SQLite
  file: it is an append-only journal beside it, ``<path>.audit.jsonl`` (for
  ``:memory:``, an unlinked temporary file that lives as long as the store),
  because one ``os.write`` per group commit costs a fraction of an SQLite
  commit. See ``SqliteStore`` for the format, locking and durability.
* ``postgresql://...`` (or ``postgres://``): psycopg 3 with a small pool of
  autocommit connections. Several gateway processes share sessions, grants,
  seen token ids and ONE audit chain (the ``audit`` table): appenders are
  serialised with a transaction-scoped advisory lock, so the chain never forks.

The schema is created on open (idempotent, versioned in ``schema_version``;
SQLite schema 2 moved the ``audit`` table's rows into the journal and dropped
it). Audit ``data`` is stored as the exact canonical JSON the entry's hash was
taken over (text, not jsonb, in PostgreSQL), and ``ts`` as the exact RFC 3339
string, so re-reading an entry gives a body whose hash verifies. Only SCRAM
verifiers are stored, never a session secret; no exception message carries a
URL or secret.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import operator
import os
import sqlite3
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from runner.gateway.model import (
    GENESIS_HASH,
    AuditEntry,
    CanonicalJson,
    EntryKind,
    Grant,
    NewEntry,
    Principal,
    ScramVerifier,
    Session,
    StateStore,
)
from runner.pg import describe_server
from runner.plan.model import sha256_hex
from runner.speedups import native as _native

# Each backend's own schema history (``_SQLITE_MIGRATIONS`` / ``_POSTGRES_MIGRATIONS``).
SQLITE_SCHEMA_VERSION = 2
POSTGRES_SCHEMA_VERSION = 1

_log = logging.getLogger(__name__)

# pg_advisory_xact_lock keys (advisory locks are scoped to the current database).
_AUDIT_LOCK_KEY = 0x5169_0FF0_A0D1_7001
_SCHEMA_LOCK_KEY = 0x5169_0FF0_A0D1_7002

# Expired seen_jti rows are purged at most this often per store, and only once
# they are well past expiry (a validator may allow some clock-skew leeway).
_JTI_PURGE_INTERVAL_S = 60.0
_JTI_PURGE_GRACE_S = 300.0

_AUDIT_COLUMNS = "seq, ts, kind, session_id, ref, data, prev_hash, hash"
_SESSION_COLUMNS = (
    "id, salt, iterations, stored_key, server_key, principal, claims, database, role, "
    "created_at, expires_at, revoked_at"
)
_GRANT_COLUMNS = (
    "id, database, fingerprint, approver, evidence_url, session_id, plan_hash, created_at, "
    "used_at, used_by_session"
)


class StoreError(Exception):
    """The state store cannot do what was asked; the message names what and why."""


# -- schema ---------------------------------------------------------------------------

_SQLITE_V1 = (
    """CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        salt BLOB NOT NULL,
        iterations INTEGER NOT NULL,
        stored_key BLOB NOT NULL,
        server_key BLOB NOT NULL,
        principal TEXT NOT NULL,
        claims TEXT NOT NULL,
        database TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT
    )""",
    """CREATE TABLE seen_jti (
        issuer TEXT NOT NULL,
        jti TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (issuer, jti)
    )""",
    "CREATE INDEX seen_jti_expires ON seen_jti (expires_at)",
    """CREATE TABLE grants (
        id TEXT PRIMARY KEY,
        database TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        approver TEXT NOT NULL,
        evidence_url TEXT,
        session_id TEXT,
        plan_hash TEXT,
        created_at TEXT NOT NULL,
        used_at TEXT,
        used_by_session TEXT
    )""",
    "CREATE INDEX grants_unused ON grants (database, fingerprint) WHERE used_at IS NULL",
    """CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL,
        session_id TEXT,
        ref INTEGER,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX audit_session ON audit (session_id, seq)",
)

_POSTGRES_V1 = (
    """CREATE TABLE sessions (
        id text PRIMARY KEY,
        salt bytea NOT NULL,
        iterations integer NOT NULL,
        stored_key bytea NOT NULL,
        server_key bytea NOT NULL,
        principal text NOT NULL,
        claims text NOT NULL,
        database text NOT NULL,
        role text NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        revoked_at timestamptz
    )""",
    """CREATE TABLE seen_jti (
        issuer text NOT NULL,
        jti text NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (issuer, jti)
    )""",
    "CREATE INDEX seen_jti_expires ON seen_jti (expires_at)",
    """CREATE TABLE grants (
        id text PRIMARY KEY,
        database text NOT NULL,
        fingerprint text NOT NULL,
        approver text NOT NULL,
        evidence_url text,
        session_id text,
        plan_hash text,
        created_at timestamptz NOT NULL,
        used_at timestamptz,
        used_by_session text
    )""",
    "CREATE INDEX grants_unused ON grants (database, fingerprint) WHERE used_at IS NULL",
    """CREATE TABLE audit (
        seq bigint PRIMARY KEY,
        ts text NOT NULL,
        kind text NOT NULL,
        session_id text,
        ref bigint,
        data text NOT NULL,
        prev_hash text NOT NULL,
        hash text NOT NULL
    )""",
    "CREATE INDEX audit_session ON audit (session_id, seq)",
)

# The audit chain leaves the SQLite file for the journal beside it: SqliteStore's
# migration copies the table's rows into the journal before these statements run.
_SQLITE_V2 = ("DROP TABLE audit",)  # drops its index too

# version -> the statements that bring the schema from version-1 to version.
_SQLITE_MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SQLITE_V1, 2: _SQLITE_V2}
_POSTGRES_MIGRATIONS: dict[int, tuple[str, ...]] = {1: _POSTGRES_V1}


def _newer_schema(found: int, supported: int) -> StoreError:
    return StoreError(
        f"the state store's schema is version {found}, newer than this gateway supports "
        f"({supported}); upgrade the gateway"
    )


# -- values ---------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"audit data holds a {type(value).__name__}, which is not JSON")


# Built once: json.dumps(...) with these arguments makes a new encoder per call.
_CANONICAL = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,  # NaN and infinities are not JSON
    default=_json_default,
)
_RAW_DECODE = json.JSONDecoder().raw_decode  # the text is compact: no whitespace to skip


def canonical_data(data: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The canonical JSON text of entry data and the plain dict it reads back as.

    Datetimes become RFC 3339 strings, enums their values, tuples lists: the
    hash is taken over exactly what is stored, so it verifies after a round trip.
    """
    try:
        text = _CANONICAL.encode(data)
    except ValueError as exc:
        raise ValueError(f"audit data is not JSON: {exc}") from exc
    plain = _RAW_DECODE(text)[0]
    if not isinstance(plain, dict):
        raise TypeError("audit data must be a JSON object")
    return text, plain


def _plain_json(value: Mapping[str, Any]) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


def _utc(value: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """``2024-05-01T12:00:00.123456Z``: fixed width, so text order is time order."""
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _from_rfc3339(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


# (kind, session_id, ref, canonical JSON text of the data as stored, the plain
# dict that text reads back as, as hashed; None when the caller needs no entries):
# plain tuples, built once per entry.
_Prepared = tuple[EntryKind, str | None, int | None, str, dict[str, Any] | None]


def _prepare(entries: Sequence[NewEntry], *, decode: bool = True) -> list[_Prepared]:
    """Validate and canonicalise entries before any lock is taken.

    ``CanonicalJson`` data is already the canonical text (its maker vouches for
    that): used as is, only read back when ``decode`` asks for the plain dict.
    """
    prepared: list[_Prepared] = []
    for new in entries:
        data = new.data
        text: str
        if isinstance(data, CanonicalJson):
            text, plain = data, (_canonical_plain(data) if decode else None)
        elif decode:
            text, plain = canonical_data(data)
        else:
            text, plain = _canonical_object_text(data), None
        ref = new.ref
        kind = new.kind
        prepared.append(
            (
                kind if type(kind) is EntryKind else EntryKind(kind),
                new.session_id,
                None if ref is None else int(ref),
                text,
                plain,
            )
        )
    return prepared


def _canonical_plain(text: CanonicalJson) -> dict[str, Any]:
    plain = json.loads(text)
    if not isinstance(plain, dict):
        raise TypeError("audit data must be a JSON object")
    return plain


def _canonical_object_text(data: Mapping[str, Any]) -> str:
    """canonical_data's text alone: the same checks, without reading the text back."""
    try:
        text = _CANONICAL.encode(data)
    except ValueError as exc:
        raise ValueError(f"audit data is not JSON: {exc}") from exc
    if not text.startswith("{"):  # what the encoder makes of anything but a mapping
        raise TypeError("audit data must be a JSON object")
    return text


def _chain_rows(
    prepared: Sequence[_Prepared],
    last_seq: int,
    last_hash: str,
    ts: str,
    lines: list[str] | None = None,
) -> list[tuple[Any, ...]]:
    """The audit rows (``_AUDIT_COLUMNS``) of ``prepared`` chained after (last_seq, last_hash).

    With ``lines``, also each entry's journal line (the SQLite store's format): the
    body text with ``"hash"`` added last, newline-terminated.
    """
    rows: list[tuple[Any, ...]] = []
    prev = last_hash
    seq = last_seq
    for kind, session_id, ref, text, _ in prepared:
        seq += 1
        kind_text = _KIND_TEXT[kind]
        # canonical_json(body) spelled out with the data's canonical text, which is
        # byte for byte what json.dumps gives for it: the data is encoded once.
        # (tests/test_gateway_store.py checks this equals entry_hash over body().)
        body_text = (
            f'{{"data":{text},"kind":"{kind_text}",'
            f'"prev_hash":"{prev}","ref":{_json_int(ref)},"seq":{seq},'
            f'"session_id":{_json_str(session_id)},"ts":"{ts}"}}'
        )
        digest = sha256_hex(prev + body_text)
        rows.append((seq, ts, kind_text, session_id, ref, text, prev, digest))
        if lines is not None:
            lines.append(f'{body_text[:-1]},"hash":"{digest}"}}\n')
        prev = digest
    return rows


def _entries(prepared: Sequence[_Prepared], rows: Sequence[tuple[Any, ...]]) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for (kind, session_id, ref, text, plain), row in zip(prepared, rows, strict=True):
        data = plain if plain is not None else _RAW_DECODE(text)[0]
        entries.append(AuditEntry(row[0], row[1], kind, session_id, data, row[6], row[7], ref))
    return entries


def _chain(
    prepared: Sequence[_Prepared], last_seq: int, last_hash: str, ts: str
) -> list[tuple[AuditEntry, str]]:
    rows = _chain_rows(prepared, last_seq, last_hash, ts)
    return list(zip(_entries(prepared, rows), (p[3] for p in prepared), strict=True))


_KIND_TEXT = {kind: kind.value for kind in EntryKind}  # Enum .value is a slow property


def _now_rfc3339() -> str:
    """``rfc3339(datetime.now(UTC))``, without strftime (the audit append's hot path)."""
    # isoformat(timespec="microseconds") of an aware UTC time is
    # "YYYY-MM-DDTHH:MM:SS.ffffff+00:00": the same fixed-width text, other suffix.
    return datetime.now(UTC).isoformat(timespec="microseconds")[:26] + "Z"


def _json_int(value: int | None) -> str:
    return "null" if value is None else str(int(value))


@functools.lru_cache(maxsize=4096)  # session ids: a few per connection, many entries each
def _json_str(value: str | None) -> str:
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def build_entries(
    entries: Sequence[NewEntry], last_seq: int, last_hash: str, *, ts: str | None = None
) -> list[tuple[AuditEntry, str]]:
    """Chain ``entries`` after (last_seq, last_hash): each entry and its stored data text."""
    stamp = ts if ts is not None else rfc3339(datetime.now(UTC))
    return _chain(_prepare(entries), last_seq, last_hash, stamp)


# Row conversions shared by both stores: they differ only in how a timestamp is
# written (RFC 3339 text for SQLite, an aware datetime for PostgreSQL) and read.


def _optional(value: datetime | None, write: Callable[[datetime], Any]) -> Any:
    return None if value is None else write(value)


def _session_row(session: Session, write: Callable[[datetime], Any]) -> tuple[Any, ...]:
    v = session.verifier
    return (
        session.id,
        v.salt,
        v.iterations,
        v.stored_key,
        v.server_key,
        _plain_json(session.principal.to_json()),
        _plain_json(session.principal.claims),
        session.database,
        session.role,
        write(session.created_at),
        write(session.expires_at),
        _optional(session.revoked_at, write),
    )


def _session_from(row: Sequence[Any], read: Callable[[Any], datetime]) -> Session:
    return Session(
        id=row[0],
        verifier=ScramVerifier(bytes(row[1]), int(row[2]), bytes(row[3]), bytes(row[4])),
        principal=_principal_from(row[5], row[6]),
        database=row[7],
        role=row[8],
        created_at=read(row[9]),
        expires_at=read(row[10]),
        revoked_at=None if row[11] is None else read(row[11]),
    )


def _grant_row(grant: Grant, write: Callable[[datetime], Any]) -> tuple[Any, ...]:
    return (
        grant.id,
        grant.database,
        grant.fingerprint,
        grant.approver,
        grant.evidence_url,
        grant.session_id,
        grant.plan_hash,
        write(grant.created_at),
        _optional(grant.used_at, write),
        grant.used_by_session,
    )


def _grant_from(row: Sequence[Any], read: Callable[[Any], datetime]) -> Grant:
    return Grant(
        id=row[0],
        database=row[1],
        fingerprint=row[2],
        approver=row[3],
        evidence_url=row[4],
        session_id=row[5],
        plan_hash=row[6],
        created_at=read(row[7]),
        used_at=None if row[8] is None else read(row[8]),
        used_by_session=row[9],
    )


def _entry_from_row(row: Sequence[Any]) -> AuditEntry:
    seq, ts, kind, session_id, ref, data, prev_hash, digest = row
    return AuditEntry(
        seq=int(seq),
        ts=str(ts),
        kind=EntryKind(kind),
        session_id=session_id,
        data=json.loads(data),
        prev_hash=str(prev_hash),
        hash=str(digest),
        ref=None if ref is None else int(ref),
    )


def _principal_from(principal_json: str, claims_json: str) -> Principal:
    fields = json.loads(principal_json)
    return Principal(
        iss=fields["iss"],
        sub=fields["sub"],
        actor=fields.get("actor"),
        repository=fields.get("repository"),
        ref=fields.get("ref"),
        sha=fields.get("sha"),
        run_id=fields.get("run_id"),
        workflow=fields.get("workflow"),
        claims=json.loads(claims_json),
    )


# -- the SQLite store's audit journal -------------------------------------------------

JOURNAL_SUFFIX = ".audit.jsonl"

_ENTRY_FIELDS = frozenset(("seq", "ts", "kind", "session_id", "ref", "data", "prev_hash", "hash"))
_KINDS = {kind.value: kind for kind in EntryKind}
_READ_CHUNK = 1 << 20
_ADOPT_BATCH = 10_000  # old audit rows per write when moving the table into a journal
_by_seq = operator.attrgetter("seq")


def _not_an_entry(name: str, where: str, why: str) -> StoreError:
    return StoreError(
        f"audit journal {name} {where} is not a valid audit entry: {why}; the journal was modified"
    )


def _entry_from_line(line: bytes, name: str, where: str) -> AuditEntry:
    """One journal line (without its newline) as an entry; a StoreError naming the
    line if it is not one. Content that parses is left to ``verify_chain``."""
    try:
        fields = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _not_an_entry(name, where, f"byte {exc.start + 1} is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _not_an_entry(name, where, f"not JSON ({exc.msg} at byte {exc.pos + 1})") from None
    if type(fields) is not dict:
        raise _not_an_entry(name, where, "not a JSON object")
    if fields.keys() != _ENTRY_FIELDS:
        missing = ", ".join(sorted(_ENTRY_FIELDS - fields.keys()))
        unknown = ", ".join(sorted(fields.keys() - _ENTRY_FIELDS))
        why = "; ".join(
            part
            for part in (missing and f"missing {missing}", unknown and f"unknown field {unknown}")
            if part
        )
        raise _not_an_entry(name, where, why)
    seq, ref, kind = fields["seq"], fields["ref"], fields["kind"]
    session_id, data = fields["session_id"], fields["data"]
    if type(seq) is not int:  # bool is an int subclass: type(), not isinstance()
        raise _not_an_entry(name, where, "seq is not an integer")
    if ref is not None and type(ref) is not int:
        raise _not_an_entry(name, where, "ref is not an integer or null")
    if type(kind) is not str or kind not in _KINDS:  # a list or object is unhashable
        raise _not_an_entry(name, where, f"kind {kind!r} is not an entry kind")
    if session_id is not None and type(session_id) is not str:
        raise _not_an_entry(name, where, "session_id is not a string or null")
    if type(data) is not dict:
        raise _not_an_entry(name, where, "data is not a JSON object")
    for text_field in ("ts", "prev_hash", "hash"):
        if type(fields[text_field]) is not str:
            raise _not_an_entry(name, where, f"{text_field} is not a string")
    return AuditEntry(
        seq, fields["ts"], _KINDS[kind], session_id, data, fields["prev_hash"], fields["hash"], ref
    )


def _line_start(fd: int, lo: int, hi: int) -> int:
    """One past the last newline in bytes [lo, hi) of ``fd``, or ``lo`` if there is
    none. Reads backwards in growing chunks: only the last line is read."""
    pos, step = hi, 4096
    while pos > lo:
        begin = max(lo, pos - step)
        at = os.pread(fd, pos - begin, begin).rfind(b"\n")
        if at >= 0:
            return begin + at + 1
        pos, step = begin, min(step * 2, _READ_CHUNK)
    return lo


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):  # rare (a signal, a full disk): finish or raise
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def _sync_directory(path: str) -> None:
    """Make a new file's directory entry durable (fsync on the file does not)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)  # no fdatasync on macOS


def _row_line(row: Sequence[Any]) -> str:
    """A schema-1 ``audit`` row as a journal line, faithfully: a row altered in the
    table stays altered (and fails ``verify_chain``), it is never repaired here."""

    def value(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, default=str)

    seq, ts, kind, session_id, ref, data, prev_hash, digest = row
    try:
        # Re-encoded canonically: equal to the stored text for every row the gateway
        # wrote, and verify_chain hashes the parsed value either way.
        data_text = _CANONICAL.encode(json.loads(data))
    except (TypeError, ValueError):
        data_text = value(data)  # not JSON: kept as a string, which the reader refuses
    return (
        f'{{"data":{data_text},"kind":{value(kind)},"prev_hash":{value(prev_hash)},'
        f'"ref":{value(ref)},"seq":{value(seq)},"session_id":{value(session_id)},'
        f'"ts":{value(ts)},"hash":{value(digest)}}}\n'
    )


class _Journal:
    """The SQLite store's audit chain as an append-only file (see ``SqliteStore``).

    Writers (this process's threads via the store's lock, other processes via an
    exclusive ``flock``) append whole lines with one ``os.write``. Bytes up to any
    newline are final: a torn tail is cut back only to the last newline. Readers
    take no lock and read complete lines only.
    """

    def __init__(self, path: str | None, *, sync: bool) -> None:
        self.path = path
        self.name = path if path is not None else "(in memory)"
        self._sync = sync
        if path is None:
            # An in-memory store gets an anonymous file: the same code path, gone with it.
            fd, temporary = tempfile.mkstemp(prefix="signoff-audit-", suffix=JOURNAL_SUFFIX)
            os.unlink(temporary)
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        else:
            # 0600: the entries hold statement text, which may hold data.
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            if sync:
                try:
                    _sync_directory(path)
                except OSError:
                    os.close(fd)
                    raise
        self.fd = fd
        # The offset up to which this process knows the file (-1: not read yet) and
        # the entry that ends there; re-learnt whenever the file's size differs.
        self._end = -1
        self._last_seq = 0
        self._last_hash = GENESIS_HASH

    def append(self, prepared: Sequence[_Prepared]) -> list[tuple[Any, ...]]:
        """Chain ``prepared`` after the file's last entry and write it; its rows."""
        rows: list[tuple[Any, ...]] = []

        def lines(last_seq: int, last_hash: str, ts: str) -> tuple[bytes, str]:
            text: list[str] = []
            rows.extend(_chain_rows(prepared, last_seq, last_hash, ts, text))
            return "".join(text).encode(), rows[-1][7]

        self._write_chained(len(prepared), lines)
        return rows

    def append_seqs(self, prepared: Sequence[_Prepared]) -> list[int]:
        """``append`` when only the seqs are wanted: the same lines, made in C when it
        is built (tests/test_speedups.py checks they are the same bytes)."""
        if _native is None:
            return [row[0] for row in self.append(prepared)]
        items = list(prepared)
        first = self.append_native(items)
        return list(range(first, first + len(items)))

    def append_native(self, items: list[Any]) -> int:
        """Lines made in C from tuples as chain_lines reads them (kind, session_id,
        ref, canonical data text, ...); the first new seq. While the file is as this
        process left it, the whole append (lock, check, stamp, chain, write, unlock)
        is one C call: the gateway's group commit runs it a few thousand times a
        second, and in Python its bookkeeping cost as much as its system calls."""
        native = _native
        assert native is not None
        if self._end >= 0:
            first = self._last_seq + 1
            try:
                done = native.journal_append(
                    self.fd, items, self._last_seq, self._last_hash, self._end, self._sync
                )
            except OSError as exc:
                self._end = -1  # whatever reached the file is learnt again
                raise StoreError(
                    f"cannot append to the audit journal {self.name}: {exc.strerror or exc}"
                ) from exc
            if done is not None:
                self._end, self._last_hash = done
                self._last_seq = first + len(items) - 1
                return first
        return self._write_chained(
            len(items),
            lambda last_seq, last_hash, ts: native.chain_lines(items, last_seq, last_hash, ts),
        )

    def _write_chained(
        self, count: int, lines: Callable[[int, str, str], tuple[bytes, str]]
    ) -> int:
        """Under the flock: learn the file's last entry, then write ``lines(last seq,
        last hash, timestamp)`` (``count`` chained lines and the new last hash); the
        first new seq. The caller holds the store's lock (threads); the flock orders
        processes."""
        fd = self.fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(fd).st_size
                if size != self._end:
                    self._catch_up(size)  # another process appended, or first use
                start, first_seq = self._end, self._last_seq + 1
                data, last_hash = lines(self._last_seq, self._last_hash, _now_rfc3339())
                # Unknown until the write is complete: after a failure, whatever
                # reached the file is re-read (a torn tail cut) by the next append.
                self._end = -1
                _write_all(fd, data)
                if self._sync:
                    _datasync(fd)
                self._end = start + len(data)
                self._last_seq, self._last_hash = first_seq + count - 1, last_hash
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            self._end = -1
            raise StoreError(
                f"cannot append to the audit journal {self.name}: {exc.strerror or exc}"
            ) from exc
        return first_seq

    def _catch_up(self, size: int) -> None:
        """Under the flock: cut a torn tail, then learn the last entry from the file."""
        fd = self.fd
        known = self._end if 0 <= self._end <= size else 0  # a line starts here
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # A writer died mid-write: those bytes were never acknowledged, so the
            # statement they describe was never forwarded. Cut them off.
            cut = _line_start(fd, 0, size)
            os.ftruncate(fd, cut)
            _log.warning(
                "audit journal %s: cut off %d bytes of an entry a writer never finished",
                self.name,
                size - cut,
            )
            # Below this process's own end means the file was cut by someone else:
            # learn its last entry afresh.
            size, known = cut, (known if known <= cut else 0)
        if size == known:
            if size == 0:
                self._last_seq, self._last_hash = 0, GENESIS_HASH
            self._end = size
            return
        start = _line_start(fd, known, size - 1)
        last = _entry_from_line(os.pread(fd, size - 1 - start, start), self.name, "last line")
        self._last_seq, self._last_hash, self._end = last.seq, last.hash, size

    def adopt(self, lines: Iterable[str], source: str) -> int:
        """Write ``lines`` (the old ``audit`` table, in seq order) into the journal,
        durably, before the table is dropped: into an empty journal, or completing
        an earlier copy that was interrupted. Returns how many lines there were."""
        fd = self.fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            pos = count = 0
            batch: list[str] = []
            for line in lines:
                batch.append(line)
                count += 1
                if len(batch) == _ADOPT_BATCH:
                    pos = self._adopt_batch(batch, pos, size, source)
                    batch.clear()
            pos = self._adopt_batch(batch, pos, size, source)
            if count and pos < size:
                raise self._not_adoptable(source)
            if count:
                os.fsync(fd)  # whatever the synchronous setting: the table goes next
                if self.path is not None:
                    _sync_directory(self.path)
            self._end = -1
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return count

    def _adopt_batch(self, batch: list[str], pos: int, size: int, source: str) -> int:
        data = "".join(batch).encode()
        if pos < size:  # the file already holds bytes here: they must be these
            have = os.pread(self.fd, min(len(data), size - pos), pos)
            if data[: len(have)] != have:
                raise self._not_adoptable(source)
            data, pos = data[len(have) :], pos + len(have)
        if data:
            _write_all(self.fd, data)
        return pos + len(data)

    def _not_adoptable(self, source: str) -> StoreError:
        return StoreError(
            f"cannot move the audit table of {source} into {self.name}: the journal already "
            "holds other entries; move the journal aside and open the store again"
        )

    def read(self, fd: int, session_id: str | None, after_seq: int) -> list[AuditEntry]:
        """The entries in ``fd`` (a dup of ``self.fd``), complete lines only: bytes past
        the last newline are a write in progress, or a torn one nobody acknowledged."""
        end = _line_start(fd, 0, os.fstat(fd).st_size)
        # A session's entries contain its id as JSON text: other lines are skipped
        # without parsing (a false positive is filtered after parsing).
        needle = None if session_id is None else _json_str(session_id).encode()
        entries: list[AuditEntry] = []
        number = 0
        pos = 0
        rest = b""
        while pos < end:
            chunk = os.pread(fd, min(_READ_CHUNK, end - pos), pos)
            if not chunk:
                raise StoreError(
                    f"audit journal {self.name} was cut short while being read; read it again"
                )
            pos += len(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                number += 1
                if needle is not None and needle not in line:
                    continue
                entry = _entry_from_line(line, self.name, f"line {number}")
                if entry.seq > after_seq and (session_id is None or entry.session_id == session_id):
                    entries.append(entry)
        entries.sort(key=_by_seq)  # written in seq order: this only orders an edited file
        return entries

    def close(self) -> None:
        os.close(self.fd)


# -- SQLite ---------------------------------------------------------------------------


class SqliteStore:
    """The state store in one SQLite file (or in memory), for a single gateway node.

    Sessions, seen token ids and grants are SQLite tables. The audit chain is the
    journal ``<path>.audit.jsonl`` beside the file (``journal_path``; an unlinked
    temporary file for ``:memory:``): one line per entry, UTF-8, ``\\n``-terminated.
    Each line is a JSON object with exactly the entry's fields: its canonical body
    (sorted keys data, kind, prev_hash, ref, seq, session_id, ts; ``data`` is the
    data object itself) with ``"hash"`` added last. The line without that last
    member is the text the hash was taken over: hash = sha256(prev_hash + body).
    ``signoff gateway audit verify`` reads and verifies it.

    Appending takes an exclusive ``flock`` on the journal, learns the last entry
    from the file if another process (the grant CLI, a second gateway) appended
    since, chains the entries and writes them with one ``os.write``. A file that
    does not end in a newline was torn by a writer that died mid-write: those bytes
    were never acknowledged, so the next appender cuts them off (one warning).

    Durability follows ``synchronous``: OFF and NORMAL write without fsync, which
    survives the gateway crashing (not the machine), like SQLite's WAL with NORMAL;
    FULL and EXTRA ``fdatasync`` the journal after each append.
    """

    def __init__(
        self, path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
    ) -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise StoreError(
                f"sqlite synchronous must be NORMAL, FULL, EXTRA or OFF, not {synchronous!r}"
            )
        self.path = path
        in_memory = path in {"", ":memory:"}  # "": SQLite's private temporary database
        self.journal_path: str | None = None if in_memory else path + JOURNAL_SUFFIX
        self._lock = threading.RLock()
        self._last_purge = 0.0
        self._journal: _Journal | None = None
        try:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the state store file {path}: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn
        try:
            self._journal = _Journal(
                self.journal_path, sync=synchronous.upper() in {"FULL", "EXTRA"}
            )
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if not in_memory:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._migrate(conn, self._journal)
        except BaseException as exc:
            conn.close()
            self._conn = None
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open the state store file {path}: {exc}") from exc
            if isinstance(exc, OSError):
                raise StoreError(
                    f"cannot open the audit journal {self.journal_path or '(in memory)'}: "
                    f"{exc.strerror or exc}"
                ) from exc
            raise

    # plumbing

    def _migrate(self, conn: sqlite3.Connection, journal: _Journal) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > SQLITE_SCHEMA_VERSION:
                raise _newer_schema(current, SQLITE_SCHEMA_VERSION)
            for version in range(current + 1, SQLITE_SCHEMA_VERSION + 1):
                if version == 2:
                    # Schema 1 kept the chain in an ``audit`` table: it moves into the
                    # journal (durably) before the table is dropped, in this transaction,
                    # so a crash in between leaves the table for the next open to move.
                    rows = conn.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit ORDER BY seq")
                    moved = journal.adopt(map(_row_line, rows), self.path)
                    if moved:
                        _log.info("moved %d audit entries into %s", moved, journal.name)
                for statement in _SQLITE_MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise StoreError("the state store is closed")
            yield self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction: the write lock is taken up front."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError("the state store is closed")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # sessions

    def create_session(self, session: Session) -> None:
        try:
            with self._write() as conn:
                conn.execute(
                    f"INSERT INTO sessions ({_SESSION_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _session_row(session, rfc3339),
                )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"session {session.id} already exists") from exc

    def get_session(self, session_id: str) -> Session | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        if row is None:
            return None
        return _session_from(row, _from_rfc3339)

    def revoke_session(self, session_id: str, at: datetime) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (rfc3339(at), session_id),
            )
            return cur.rowcount == 1

    # token ids

    def remember_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        with self._write() as conn:
            now = time.monotonic()
            if now - self._last_purge >= _JTI_PURGE_INTERVAL_S:
                self._last_purge = now
                cutoff = datetime.fromtimestamp(time.time() - _JTI_PURGE_GRACE_S, UTC)
                conn.execute("DELETE FROM seen_jti WHERE expires_at < ?", (rfc3339(cutoff),))
            cur = conn.execute(
                "INSERT INTO seen_jti (issuer, jti, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (issuer, jti) DO NOTHING",
                (issuer, jti, rfc3339(expires_at)),
            )
            return cur.rowcount == 1

    # grants

    def add_grant(self, grant: Grant) -> None:
        try:
            with self._write() as conn:
                conn.execute(
                    f"INSERT INTO grants ({_GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _grant_row(grant, rfc3339),
                )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"grant {grant.id} already exists") from exc

    @staticmethod
    def _grant(row: Sequence[Any]) -> Grant:
        return _grant_from(row, _from_rfc3339)

    def consume_grant(
        self, database: str, fingerprint: str, session_id: str, at: datetime
    ) -> Grant | None:
        with self._write() as conn:
            row = conn.execute(
                "SELECT id FROM grants WHERE database = ? AND fingerprint = ? "
                "AND used_at IS NULL AND (session_id IS NULL OR session_id = ?) "
                "ORDER BY session_id IS NULL, created_at, id LIMIT 1",
                (database, fingerprint, session_id),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE grants SET used_at = ?, used_by_session = ? WHERE id = ?",
                (rfc3339(at), session_id, row[0]),
            )
            used = conn.execute(
                f"SELECT {_GRANT_COLUMNS} FROM grants WHERE id = ?", (row[0],)
            ).fetchone()
        return self._grant(used)

    def list_grants(self, database: str | None = None) -> Sequence[Grant]:
        with self._read() as conn:
            if database is None:
                rows = conn.execute(
                    f"SELECT {_GRANT_COLUMNS} FROM grants ORDER BY created_at, id"
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_GRANT_COLUMNS} FROM grants WHERE database = ? "
                    "ORDER BY created_at, id",
                    (database,),
                ).fetchall()
        return [self._grant(row) for row in rows]

    # audit

    def append(self, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        if not entries:
            return []
        prepared = _prepare(entries)
        with self._lock:  # threads; the journal's flock orders processes
            return _entries(prepared, self._open_journal().append(prepared))

    def append_seqs(self, entries: Sequence[NewEntry]) -> list[int]:
        """``append`` for a caller that needs only the seqs: the same rows and chain,
        no entry objects built (the audit writer's hot path)."""
        if not entries:
            return []
        prepared = _prepare(entries, decode=False)
        with self._lock:
            return self._open_journal().append_seqs(prepared)

    def append_prepared_seqs(self, items: list[Any]) -> int:
        """Append entries the C lanes built (runner/_lane.c: (kind, session_id, ref,
        canonical data text, ...) tuples, as chain_lines reads them); the first seq."""
        with self._lock:
            return self._open_journal().append_native(items)

    def entries(self, *, session_id: str | None = None, after_seq: int = 0) -> list[AuditEntry]:
        """The journal's entries in seq order. Read from a duplicate descriptor without
        the store's lock, so a long read never holds up the appenders."""
        with self._lock:
            journal = self._open_journal()
            fd = os.dup(journal.fd)
        try:
            return journal.read(fd, session_id, after_seq)
        finally:
            os.close(fd)

    def _open_journal(self) -> _Journal:
        journal = self._journal
        if journal is None:
            raise StoreError("the state store is closed")
        return journal

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._journal is not None:
                self._journal.close()
                self._journal = None


# -- PostgreSQL -----------------------------------------------------------------------

PgConnection = psycopg.Connection[tuple[Any, ...]]


class _Pool:
    """A few autocommit connections shared by threads (LIFO, created on demand)."""

    def __init__(self, conninfo: str, where: str, max_size: int, connect_timeout: int) -> None:
        self._conninfo = conninfo
        self._where = where
        self._max_size = max(1, max_size)
        self._connect_timeout = connect_timeout
        self._idle: list[PgConnection] = []
        self._size = 0
        self._closed = False
        self._cond = threading.Condition()

    def _connect(self) -> PgConnection:
        try:
            return psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=self._connect_timeout
            )
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(
                f"cannot connect to the state store on PostgreSQL at {self._where}: {first}"
            ) from exc

    def _checkout(self) -> PgConnection:
        with self._cond:
            while True:
                if self._closed:
                    raise StoreError("the state store is closed")
                while self._idle:
                    conn = self._idle.pop()
                    if not conn.closed and not conn.broken:
                        return conn
                    self._size -= 1
                if self._size < self._max_size:
                    self._size += 1
                    break
                self._cond.wait()
        try:
            return self._connect()
        except BaseException:
            with self._cond:
                self._size -= 1
                self._cond.notify()
            raise

    def _checkin(self, conn: PgConnection) -> None:
        reusable = (
            not conn.closed
            and not conn.broken
            and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        )
        with self._cond:
            if reusable and not self._closed:
                self._idle.append(conn)
            else:
                self._size -= 1
                conn.close()
            self._cond.notify()

    @contextmanager
    def connection(self) -> Iterator[PgConnection]:
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._size -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            conn.close()


class PostgresStore:
    """The state store in a PostgreSQL database, shared by several gateway processes."""

    def __init__(self, conninfo: str, *, pool_size: int = 10, connect_timeout: int = 10) -> None:
        self.where = describe_server(conninfo)
        self._pool = _Pool(conninfo, self.where, pool_size, connect_timeout)
        self._last_purge = 0.0
        self._purge_lock = threading.Lock()
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def _migrate(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide: serialise openers.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > POSTGRES_SCHEMA_VERSION:
                raise _newer_schema(current, POSTGRES_SCHEMA_VERSION)
            for version in range(current + 1, POSTGRES_SCHEMA_VERSION + 1):
                for statement in _POSTGRES_MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    # sessions

    def create_session(self, session: Session) -> None:
        try:
            with self._pool.connection() as conn:
                conn.execute(
                    f"INSERT INTO sessions ({_SESSION_COLUMNS}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    _session_row(session, _utc),
                )
        except pg_errors.UniqueViolation as exc:
            raise StoreError(f"session {session.id} already exists") from exc

    def get_session(self, session_id: str) -> Session | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = %s", (session_id,)
            ).fetchone()
        if row is None:
            return None
        return _session_from(row, _utc)

    def revoke_session(self, session_id: str, at: datetime) -> bool:
        with self._pool.connection() as conn:
            cur = conn.execute(
                "UPDATE sessions SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (_utc(at), session_id),
            )
            return cur.rowcount == 1

    # token ids

    def _purge_due(self) -> bool:
        with self._purge_lock:
            now = time.monotonic()
            if now - self._last_purge < _JTI_PURGE_INTERVAL_S:
                return False
            self._last_purge = now
            return True

    def remember_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        with self._pool.connection() as conn:
            if self._purge_due():
                conn.execute(
                    "DELETE FROM seen_jti WHERE expires_at < now() - make_interval(secs => %s)",
                    (_JTI_PURGE_GRACE_S,),
                )
            cur = conn.execute(
                "INSERT INTO seen_jti (issuer, jti, expires_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (issuer, jti) DO NOTHING",
                (issuer, jti, _utc(expires_at)),
            )
            return cur.rowcount == 1

    # grants

    def add_grant(self, grant: Grant) -> None:
        try:
            with self._pool.connection() as conn:
                conn.execute(
                    f"INSERT INTO grants ({_GRANT_COLUMNS}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    _grant_row(grant, _utc),
                )
        except pg_errors.UniqueViolation as exc:
            raise StoreError(f"grant {grant.id} already exists") from exc

    @staticmethod
    def _grant(row: Sequence[Any]) -> Grant:
        return _grant_from(row, _utc)

    def consume_grant(
        self, database: str, fingerprint: str, session_id: str, at: datetime
    ) -> Grant | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"UPDATE grants SET used_at = %s, used_by_session = %s "
                "WHERE id = ("
                "  SELECT id FROM grants WHERE database = %s AND fingerprint = %s "
                "  AND used_at IS NULL AND (session_id IS NULL OR session_id = %s) "
                "  ORDER BY session_id IS NULL, created_at, id "
                "  LIMIT 1 FOR UPDATE SKIP LOCKED"
                f") AND used_at IS NULL RETURNING {_GRANT_COLUMNS}",
                (_utc(at), session_id, database, fingerprint, session_id),
            ).fetchone()
        return None if row is None else self._grant(row)

    def list_grants(self, database: str | None = None) -> Sequence[Grant]:
        with self._pool.connection() as conn:
            if database is None:
                rows = conn.execute(
                    f"SELECT {_GRANT_COLUMNS} FROM grants ORDER BY created_at, id"
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_GRANT_COLUMNS} FROM grants WHERE database = %s "
                    "ORDER BY created_at, id",
                    (database,),
                ).fetchall()
        return [self._grant(row) for row in rows]

    # audit

    def append(self, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        if not entries:
            return []
        prepared = _prepare(entries)
        with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            # One appender at a time across every process: the chain never forks.
            # The SELECT runs after the lock is held, so its snapshot sees the last
            # appender's committed rows (READ COMMITTED: a snapshot per statement).
            # Pipelined: BEGIN, lock and SELECT go in one round trip, the INSERTs
            # and COMMIT in another.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK_KEY,))
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            last_seq, last_hash = (0, GENESIS_HASH) if last is None else (int(last[0]), last[1])
            rows = _chain_rows(prepared, last_seq, last_hash, _now_rfc3339())
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
        return _entries(prepared, rows)

    def entries(self, *, session_id: str | None = None, after_seq: int = 0) -> list[AuditEntry]:
        with self._pool.connection() as conn:
            if session_id is None:
                rows = conn.execute(
                    f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE seq > %s ORDER BY seq",
                    (after_seq,),
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE session_id = %s AND seq > %s "
                    "ORDER BY seq",
                    (session_id, after_seq),
                ).fetchall()
        return [_entry_from_row(row) for row in rows]

    def close(self) -> None:
        self._pool.close()


# -- choosing by URL ------------------------------------------------------------------


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
