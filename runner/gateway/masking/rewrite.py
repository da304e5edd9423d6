"""Rewriting what the server sends: DataRow columns, COPY rows, error and notice texts.

A ``RowMask`` is made once per result (from its RowDescription, by plan.py) and holds
one action per masked column; the relay hands it each run of whole DataRow messages
(``rewrite``), which it rebuilds with only those columns changed. A result with
nothing to mask gets no RowMask: its rows are relayed as before, untouched.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .detectors import Detector, find
from .replace import Replace, spec_of

_U32 = struct.Struct("!I")
_I32 = struct.Struct("!i")
_U16 = struct.Struct("!H")
_DATA_ROW = 0x44
_NULL = b"\xff\xff\xff\xff"

# A column's action: the value's bytes (never None: a NULL stays NULL) -> the new
# value's bytes, or None for NULL.
Action = Callable[[bytes], bytes | None]


@dataclass(frozen=True)
class MaskedColumn:
    """What the audit record says of one masked column (never a value)."""

    position: int
    output: str  # the column's name in the result
    column: str  # schema.table.column, or what it was derived from
    rule: str
    how: str  # the action, or "null" / "constant" for a non-text value

    def to_json(self) -> dict[str, object]:
        return {
            "position": self.position,
            "output": self.output,
            "column": self.column,
            "rule": self.rule,
            "how": self.how,
        }


def _c_spec(act: Action, *spec: object) -> Action:
    """``act`` with its plan item for the C row rewriter (runner/_native/_mask.c)."""
    act.__dict__["c_spec"] = spec
    return act


def text_action(replace: Replace, codec: str) -> Action:
    def act(value: bytes) -> bytes | None:
        try:
            text = value.decode(codec)
        except UnicodeDecodeError:
            text = ""
        new = replace(text)
        return None if new is None else new.encode(codec, "replace")

    spec = spec_of(replace)
    if spec is None or codec != "utf-8":
        return _c_spec(act, 4, act)
    kind, arg = spec
    if kind == "keep":
        return _c_spec(act, 2, arg, act)
    if kind == "domain":
        return _c_spec(act, 3, str(arg).encode("utf-8"))
    if kind == "const":
        return _c_spec(act, 1, str(arg).encode("utf-8"))
    if kind == "pseudonym" and isinstance(arg, bytes):
        return _c_spec(act, 6, arg, act)
    return _c_spec(act, 0, None)


def constant_action(constant: bytes | None) -> Action:
    def act(value: bytes) -> bytes | None:
        return constant

    return _c_spec(act, 0, None) if constant is None else _c_spec(act, 1, constant)


# Every built-in detector needs an @ or five ASCII digits in the value (an SSN has 9,
# a phone number 7 or more, a card 13, a date 5 or more, an MRN 5): a value with
# neither is left as it is without running the patterns (in C, without calling back).
_FIVE_DIGITS = re.compile(rb"[0-9](?:[^0-9]*[0-9]){4}")


def might_hold_bytes(value: bytes) -> bool:
    return b"@" in value or _FIVE_DIGITS.search(value) is not None


def detector_action(
    found: Sequence[tuple[Detector, Replace]], codec: str, *, prefilter: bool = True
) -> Action:
    """Spans of the value that a detector matches are replaced by its rule's text.
    ``prefilter``: the built-in detectors only (a policy's own MRN pattern may match
    a value with fewer digits: every value is then looked at)."""
    detectors = [d for d, _ in found]
    by_name = {d.name: r for d, r in found}

    def act(value: bytes) -> bytes | None:
        if prefilter and not might_hold_bytes(value):
            return value
        try:
            text = value.decode(codec)
        except UnicodeDecodeError:
            return b"[REDACTED]"  # undecodable: nothing can be said of it
        spans = find(text, detectors)
        if not spans:
            return value
        out: list[str] = []
        last = 0
        for start, end, detector in spans:
            out.append(text[last:start])
            new = by_name[detector.name](text[start:end])
            out.append("" if new is None else new)
            last = end
        out.append(text[last:])
        return "".join(out).encode(codec, "replace")

    return _c_spec(act, 5 if prefilter else 4, act)


class RowMask:
    """One result's masked columns: position -> action; rows of another width are
    answered with every column NULL (they are not the rows this mask was made for)."""

    def __init__(
        self,
        width: int,
        actions: dict[int, Action],
        masked: Sequence[MaskedColumn],
        detected: frozenset[int] = frozenset(),
        names: Sequence[str] = (),
    ) -> None:
        self.width = width
        self.actions = sorted(actions.items())
        self.masked = list(masked)
        # The columns only value detectors look at, and those where one matched (the
        # audit record names a column only when something in it was masked).
        self.detected = detected
        self.hits: set[int] = set()
        self.names = list(names)
        self.detector_rule = "detectors"
        self.plan = tuple((position, *_spec(act)) for position, act in self.actions)
        if _native_mask is not None:
            self.rewrite = self._rewrite_c  # type: ignore[method-assign]

    def _rewrite_c(self, data: bytes, pos: int, n: int) -> tuple[int, bytes]:
        assert _native_mask is not None
        result: tuple[int, bytes] = _native_mask.rewrite(
            data, pos, n, self.width, self.plan, self.hits
        )
        return result

    def rewrite(self, data: bytes, pos: int, n: int) -> tuple[int, bytes]:
        """The whole DataRow messages from data[pos:], rewritten, until another message
        or an incomplete one: (where they stop, their new bytes). In C when it is
        built (runner/_native/_mask.c); this is the reference it must equal."""
        out: list[bytes] = []
        append = out.append
        row = self.row
        unpack = _U32.unpack_from
        while n - pos >= 5 and data[pos] == _DATA_ROW:
            (length,) = unpack(data, pos + 1)
            end = pos + 1 + length
            if end > n:
                break
            append(row(data, pos + 5, end))
            pos = end
        return pos, b"".join(out)

    def row(self, data: bytes, start: int, end: int) -> bytes:
        (count,) = _U16.unpack_from(data, start)
        if count != self.width:
            return blind_row(count)
        parts: list[bytes] = [b"", data[start : start + 2]]
        p = start + 2
        last = p
        unpack = _I32.unpack_from
        index = 0
        for position, act in self.actions:
            while index < position:  # skip the columns before it
                (flen,) = unpack(data, p)
                p += 4 + (flen if flen > 0 else 0)
                index += 1
            (flen,) = unpack(data, p)
            vend = p + 4 + (flen if flen > 0 else 0)
            index += 1
            if flen < 0:  # NULL stays NULL
                p = vend
                continue
            value = data[p + 4 : vend]
            new = act(value)
            if new is value:
                p = vend
                continue
            if position in self.detected:
                self.hits.add(position)
            parts.append(data[last:p])
            parts.append(_NULL if new is None else _I32.pack(len(new)) + new)
            last = p = vend
        parts.append(data[last:end])
        body_len = sum(len(x) for x in parts)
        parts[0] = b"D" + _U32.pack(body_len + 4)
        return b"".join(parts)


def _spec(act: Action) -> tuple[object, ...]:
    spec: tuple[object, ...] | None = getattr(act, "c_spec", None)
    return spec if spec is not None else (4, act)


def _load_native() -> Any:
    if os.environ.get("SIGNOFF_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from runner._native import _mask  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _mask


_native_mask = _load_native()


def blind_row(count: int) -> bytes:
    body = _U16.pack(count) + _NULL * count
    return b"D" + _U32.pack(len(body) + 4) + body


class BlindMask(RowMask):
    """Rows of a result the gateway has no description for (an Execute without a
    Describe): every column NULL."""

    def __init__(self) -> None:
        super().__init__(-1, {}, [])

    def row(self, data: bytes, start: int, end: int) -> bytes:
        (count,) = _U16.unpack_from(data, start)
        return blind_row(count)


# -- COPY ... TO STDOUT (text and CSV) ------------------------------------------------------


class CopyMask:
    """A COPY out's rows, one CopyData each: the masked fields replaced (text format:
    tab-separated with backslash escapes; CSV: the csv module), or, for a format it
    cannot split (binary), every row dropped."""

    def __init__(
        self, actions: dict[int, Action], masked: Sequence[MaskedColumn], fmt: str
    ) -> None:
        self.actions = actions
        self.masked = list(masked)
        self.format = fmt  # text | csv | drop

    def line(self, payload: bytes) -> bytes | None:
        if self.format == "drop":
            return None
        if self.format == "csv":
            return self._csv(payload)
        newline = payload.endswith(b"\n")
        fields = (payload[:-1] if newline else payload).split(b"\t")
        for position, act in self.actions.items():
            if position < len(fields) and fields[position] != b"\\N":
                new = act(_unescape(fields[position]))
                fields[position] = b"\\N" if new is None else _escape(new)
        return b"\t".join(fields) + (b"\n" if newline else b"")

    def _csv(self, payload: bytes) -> bytes:
        import csv
        import io

        text = payload.decode("utf-8", "replace")
        rows = list(csv.reader(io.StringIO(text)))
        if len(rows) != 1:
            return b""
        fields: list[str] = rows[0]
        for position, act in self.actions.items():
            if position < len(fields) and fields[position] != "":
                new = act(fields[position].encode("utf-8"))
                fields[position] = "" if new is None else new.decode("utf-8", "replace")
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(fields)
        return out.getvalue().encode("utf-8")


def _unescape(value: bytes) -> bytes:
    if b"\\" not in value:
        return value
    return (
        value.replace(b"\\t", b"\t")
        .replace(b"\\n", b"\n")
        .replace(b"\\r", b"\r")
        .replace(b"\\\\", b"\\")
    )


def _escape(value: bytes) -> bytes:
    return (
        value.replace(b"\\", b"\\\\")
        .replace(b"\t", b"\\t")
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
    )


# -- error and notice texts ------------------------------------------------------------------


def scrub_fields(body: bytes, act: Action) -> bytes | None:
    """An ErrorResponse / NoticeResponse body with its message, detail, hint, where
    and internal-query fields passed through ``act`` (value detectors); None when
    nothing changed."""
    out: list[bytes] = []
    changed = False
    offset = 0
    while offset < len(body) and body[offset] != 0:
        code = body[offset : offset + 1]
        end = body.index(b"\x00", offset + 1)
        value = body[offset + 1 : end]
        if code in (b"M", b"D", b"H", b"W", b"q", b"s", b"t", b"c", b"d", b"n"):
            new = act(value)
            if new is not None and new != value:
                value = new.replace(b"\x00", b"")
                changed = True
        out.append(code + value + b"\x00")
        offset = end + 1
    if not changed:
        return None
    return b"".join(out) + b"\x00"
