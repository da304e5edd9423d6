"""The audit chain's format: entries, their canonical JSON, the hash rule, timestamps.

An entry is one link of an append-only chain. Its *body* is every field but
``hash``: ``seq`` (1, 2, ... with no gap), ``ts`` (the append's UTC time as
``YYYY-MM-DDTHH:MM:SS.ffffffZ``, fixed width, so text order is time order),
``kind`` (``statement``, ``outcome``, ``session``, ``grant``), ``session_id``
(a string or null), ``ref`` (an outcome's statement seq, else null), ``data``
(a JSON object) and ``prev_hash`` (the previous entry's hash; ``GENESIS_HASH``,
64 zeros, for seq 1). Then::

    hash = sha256_hex(prev_hash + canonical_json(body))

where ``canonical_json`` is JSON with sorted keys, no whitespace, non-ASCII kept
as UTF-8 (``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``).
The body's keys sort as data, kind, prev_hash, ref, seq, session_id, ts; a
*journal line* (the SQLite store's file, tests/audit_journal.py) is that body text
with ``,"hash":"<hash>"`` added before its closing brace, then ``\\n``.

Every store writes through ``chain_rows`` (the C twin, ``runner._speedups.chain_lines``,
must give the same bytes), so both backends hold the same chain. Nothing here
imports the gateway: anyone can check a chain offline (``runner.audit.verify``).

Test vectors: ``runner/audit/chain_vectors.json`` (checked against this module by
tests/audit/test_audit_chain.py; C implementations read the same file). It is a JSON
object::

    {"format": "signoff-audit-chain-vectors/1",
     "chains": [{"name": str, "description": str,
                 "last_seq": int, "last_hash": str,   # the chain is appended after this
                 "ts": str,                           # one stamp for the whole append
                 "entries": [{"kind": str, "session_id": str | null, "ref": int | null,
                              "data": str,            # the data's canonical JSON text
                              "seq": int, "prev_hash": str,
                              "canonical": str,       # canonical_json(body): what is hashed
                              "hash": str,            # sha256_hex(prev_hash + canonical)
                              "journal_line": str}]}]}  # the exact line, "\\n" included

Inputs are ``last_seq``, ``last_hash``, ``ts`` and each entry's kind, session_id,
ref and data, in order (``chain_rows`` / ``chain_lines`` take them as the tuples
``(kind, session_id, ref, data, None)``); the rest is what must come out. The file
is never regenerated from the code: a change to it is a change of the audit format.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum, StrEnum
from typing import Any, NamedTuple

from runner.plan.model import canonical_json, sha256_hex

GENESIS_HASH = "0" * 64


class EntryKind(StrEnum):
    STATEMENT = "statement"  # written before the statement is forwarded (or refused)
    OUTCOME = "outcome"  # completes a statement entry: command tag or SQLSTATE
    SESSION = "session"  # session exchanged, refused, revoked, authenticated, closed
    GRANT = "grant"  # a grant added (admin CLI, approvals)


@dataclass(frozen=True)
class AuditEntry:
    """One link of the hash chain.

    A statement is two entries: ``statement`` before it is forwarded and
    ``outcome`` after (``ref`` = the statement entry's seq). A crash between
    the two leaves a statement entry with no outcome: incomplete, never missing.
    ``hash`` = sha256(prev_hash + canonical_json(body)), where body is every
    field but ``hash``.
    """

    seq: int
    ts: str  # RFC 3339 UTC
    kind: EntryKind
    session_id: str | None
    data: Mapping[str, Any]
    prev_hash: str
    hash: str
    ref: int | None = None

    def body(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind.value,
            "session_id": self.session_id,
            "ref": self.ref,
            "data": dict(self.data),
            "prev_hash": self.prev_hash,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}


def entry_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    return sha256_hex(prev_hash + canonical_json(body))


class CanonicalJson(str):
    """Entry data already encoded as a canonical JSON object (``canonical_json`` of a
    dict: sorted keys, no spaces, UTF-8 text). The proxy's hot path builds its
    statement and outcome data this way from templates, so the store neither
    encodes nor checks it again; ``tests/gateway/test_gateway_entry_data.py`` checks the
    templates equal ``canonical_json`` of the same dict."""

    __slots__ = ()


class NewEntry(NamedTuple):  # a tuple: made per statement on the proxy's hot path
    """An entry before the store gives it a seq, a timestamp and its hash."""

    kind: EntryKind
    session_id: str | None
    data: Mapping[str, Any] | CanonicalJson
    ref: int | None = None


# -- canonical JSON of entry data ------------------------------------------------------


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
RAW_DECODE = json.JSONDecoder().raw_decode  # the text is compact: no whitespace to skip


def canonical_data(data: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The canonical JSON text of entry data and the plain dict it reads back as.

    Datetimes become RFC 3339 strings, enums their values, tuples lists: the
    hash is taken over exactly what is stored, so it verifies after a round trip.
    """
    try:
        text = _CANONICAL.encode(data)
    except ValueError as exc:
        raise ValueError(f"audit data is not JSON: {exc}") from exc
    plain = RAW_DECODE(text)[0]
    if not isinstance(plain, dict):
        raise TypeError("audit data must be a JSON object")
    return text, plain


def canonical_text(value: Any) -> str:
    """``value`` (any JSON value) in canonical form, with ``canonical_data``'s encoder."""
    return _CANONICAL.encode(value)


def plain_json(value: Mapping[str, Any]) -> str:
    """Sorted compact JSON of a value that is not hashed (the stores' principal and
    claims columns): NaN passes, as it always has for those columns."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


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


def check_entry(new: NewEntry) -> None:
    """Raise ValueError/TypeError as ``prepare`` would for this entry alone."""
    if not isinstance(new.data, CanonicalJson):
        _canonical_object_text(new.data)
    EntryKind(new.kind)


# -- timestamps --------------------------------------------------------------------------


def utc(value: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """``2024-05-01T12:00:00.123456Z``: fixed width, so text order is time order."""
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def now_rfc3339() -> str:
    """``rfc3339(datetime.now(UTC))``, without strftime (the audit append's hot path)."""
    # isoformat(timespec="microseconds") of an aware UTC time is
    # "YYYY-MM-DDTHH:MM:SS.ffffff+00:00": the same fixed-width text, other suffix.
    return datetime.now(UTC).isoformat(timespec="microseconds")[:26] + "Z"


# -- chaining ------------------------------------------------------------------------------

# (kind, session_id, ref, canonical JSON text of the data as stored, the plain
# dict that text reads back as, as hashed; None when the caller needs no entries):
# plain tuples, built once per entry. The C lanes (runner/_lane.c) queue tuples of
# the same first four fields (kind as its text), which chain_rows takes as well.
Prepared = tuple[EntryKind, str | None, int | None, str, dict[str, Any] | None]

# One stored row: seq, ts, kind, session_id, ref, data text, prev_hash, hash
# (the PostgreSQL ``audit`` table's columns, in that order).
Row = tuple[int, str, str, str | None, int | None, str, str, str]
ROW_COLUMNS = "seq, ts, kind, session_id, ref, data, prev_hash, hash"

_KIND_TEXT: dict[str, str] = {kind: kind.value for kind in EntryKind}  # .value is slow


def prepare(entries: Sequence[NewEntry], *, decode: bool = True) -> list[Prepared]:
    """Validate and canonicalise entries before any lock is taken.

    ``CanonicalJson`` data is already the canonical text (its maker vouches for
    that): used as is, only read back when ``decode`` asks for the plain dict.
    """
    prepared: list[Prepared] = []
    for new in entries:
        data = new.data
        text: str
        plain: dict[str, Any] | None
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


def _json_int(value: int | None) -> str:
    return "null" if value is None else str(int(value))


@functools.lru_cache(maxsize=4096)  # session ids: a few per connection, many entries each
def json_str(value: str | None) -> str:
    """A JSON string (or null) as canonical JSON writes it."""
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def chain_rows(
    prepared: Sequence[Sequence[Any]],
    last_seq: int,
    last_hash: str,
    ts: str,
    lines: list[str] | None = None,
) -> list[Row]:
    """The rows of ``prepared`` chained after (last_seq, last_hash), stamped ``ts``.

    With ``lines``, also each entry's journal line: the body text with ``"hash"``
    added last, newline-terminated.
    """
    rows: list[Row] = []
    prev = last_hash
    seq = last_seq
    for item in prepared:
        kind, session_id, ref, text = item[0], item[1], item[2], item[3]
        seq += 1
        kind_text = _KIND_TEXT[kind]
        # canonical_json(body) spelled out with the data's canonical text, which is
        # byte for byte what json.dumps gives for it: the data is encoded once
        # (chain_vectors.json and tests/gateway/test_gateway_store.py check it).
        body_text = (
            f'{{"data":{text},"kind":"{kind_text}",'
            f'"prev_hash":"{prev}","ref":{_json_int(ref)},"seq":{seq},'
            f'"session_id":{json_str(session_id)},"ts":"{ts}"}}'
        )
        digest = sha256_hex(prev + body_text)
        rows.append((seq, ts, kind_text, session_id, ref, text, prev, digest))
        if lines is not None:
            lines.append(f'{body_text[:-1]},"hash":"{digest}"}}\n')
        prev = digest
    return rows


def row_entries(prepared: Sequence[Prepared], rows: Sequence[Row]) -> list[AuditEntry]:
    """The entries of rows ``chain_rows`` made from ``prepared`` (no JSON read twice)."""
    entries: list[AuditEntry] = []
    for (kind, session_id, ref, text, plain), row in zip(prepared, rows, strict=True):
        data = plain if plain is not None else RAW_DECODE(text)[0]
        entries.append(AuditEntry(row[0], row[1], kind, session_id, data, row[6], row[7], ref))
    return entries


def entry_from_row(row: Sequence[Any]) -> AuditEntry:
    """An entry as read back from a stored row (``ROW_COLUMNS``)."""
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


def build_entries(
    entries: Sequence[NewEntry], last_seq: int, last_hash: str, *, ts: str | None = None
) -> list[tuple[AuditEntry, str]]:
    """Chain ``entries`` after (last_seq, last_hash): each entry and its stored data text."""
    prepared = prepare(entries)
    rows = chain_rows(prepared, last_seq, last_hash, ts if ts is not None else now_rfc3339())
    return list(zip(row_entries(prepared, rows), (p[3] for p in prepared), strict=True))
