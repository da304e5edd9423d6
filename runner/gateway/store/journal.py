"""The SQLite store's audit chain: an append-only journal beside the state file.

``<path>.audit.jsonl`` (for ``:memory:``, an unlinked temporary file that lives as
long as the store): one line per entry, UTF-8, ``\\n``-terminated. Each line is a
JSON object with exactly the entry's fields: its canonical body (sorted keys data,
kind, prev_hash, ref, seq, session_id, ts; ``data`` is the data object itself)
with ``"hash"`` added last. The line without that last member is the text the hash
was taken over: hash = sha256(prev_hash + body) (runner/audit/chain.py; the
PostgreSQL store's ``audit`` rows hold the same entries, chained by the same
``chain_rows``). ``signoff gateway audit verify`` reads and verifies it.

Why a file and not an ``audit`` table in the SQLite database, as PostgreSQL has:
an append is on every statement's path (a statement is forwarded only once its
entry is durable), and one ``os.write`` of the chained lines under a ``flock``
costs a fraction of an SQLite transaction. Measured 2026-12-04 on the project's
2-core machine, a group commit of five statement entries took 10-21 us here (C
path; 45-52 us pure Python) against 186-334 us for the same rows, chained by the
same ``chain_rows``, in an SQLite ``audit`` table (``BEGIN IMMEDIATE``, last
row, five INSERTs, COMMIT; WAL, synchronous=NORMAL): about ten times the cost.
Schema 2 moved the old table's rows here.

Appending takes an exclusive ``flock`` on the journal, learns the last entry from
the file if another process (the grant CLI, a second gateway) appended since,
chains the entries and writes them with one ``os.write``. A file that does not end
in a newline was torn by a writer that died mid-write: those bytes were never
acknowledged, so the next appender cuts them off (one warning).

Durability follows the store's ``synchronous``: OFF and NORMAL write without
fsync, which survives the gateway crashing (not the machine), like SQLite's WAL
with NORMAL; FULL and EXTRA ``fdatasync`` the journal after each append.
"""

from __future__ import annotations

import fcntl
import json
import logging
import operator
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from runner._native.loader import native as _native
from runner.audit.chain import (
    GENESIS_HASH,
    AuditEntry,
    EntryKind,
    Row,
    canonical_text,
    chain_rows,
    json_str,
    now_rfc3339,
)
from runner.gateway.store.tables import StoreError

# The store's own logger name: operators filter on it.
_log = logging.getLogger("runner.gateway.store")

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


def row_line(row: Sequence[Any]) -> str:
    """A schema-1 ``audit`` row as a journal line, faithfully: a row altered in the
    table stays altered (and fails ``verify_chain``), it is never repaired here."""

    def value(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, default=str)

    seq, ts, kind, session_id, ref, data, prev_hash, digest = row
    try:
        # Re-encoded canonically: equal to the stored text for every row the gateway
        # wrote, and verify_chain hashes the parsed value either way.
        data_text = canonical_text(json.loads(data))
    except (TypeError, ValueError):
        data_text = value(data)  # not JSON: kept as a string, which the reader refuses
    return (
        f'{{"data":{data_text},"kind":{value(kind)},"prev_hash":{value(prev_hash)},'
        f'"ref":{value(ref)},"seq":{value(seq)},"session_id":{value(session_id)},'
        f'"ts":{value(ts)},"hash":{value(digest)}}}\n'
    )


class Journal:
    """The audit chain as an append-only file (see the module's docstring).

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

    def append(self, prepared: Sequence[Sequence[Any]]) -> list[Row]:
        """Chain ``prepared`` after the file's last entry and write it; its rows."""
        rows: list[Row] = []

        def lines(last_seq: int, last_hash: str, ts: str) -> tuple[bytes, str]:
            text: list[str] = []
            rows.extend(chain_rows(prepared, last_seq, last_hash, ts, text))
            return "".join(text).encode(), rows[-1][7]

        self._write_chained(len(prepared), lines)
        return rows

    def append_prepared(self, items: list[Any]) -> int:
        """``append`` when only the first seq is wanted: the same lines, made in C when
        it is built (tests/native/test_speedups.py and chain_vectors.json check they are the
        same bytes). While the file is as this process left it, the whole append
        (lock, check, stamp, chain, write, unlock) is one C call: the gateway's group
        commit runs it a few thousand times a second, and in Python its bookkeeping
        cost as much as its system calls."""
        native = _native
        if native is None:
            return self.append(items)[0][0]
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
                data, last_hash = lines(self._last_seq, self._last_hash, now_rfc3339())
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
        needle = None if session_id is None else json_str(session_id).encode()
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
