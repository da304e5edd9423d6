"""Which columns of one result are masked, and how: from its RowDescription (table
OID + attribute number per column, the type, the format), the statement's text (for
the columns the server cannot trace, table OID 0) and the database's masking view.

* a column of a table (or a view column traced to one by PostgreSQL): the first rule
  matching ``schema.table.column`` or its name, its action in full;
* a view column or a computed column whose lineage reaches a masked column
  (lineage.py), or whose lineage cannot be established in a statement that reads
  masked data: fully redacted (a partial form of a derived value may show more of
  it: ``reverse(ssn)``), by the source's rule;
* a column whose table OID the catalog does not know (a table made since it was
  read, a temporary table): fully redacted, and the catalog is read again;
* a text column nothing else masks: the value detectors, span by span;
* a value of a non-text type, or of a text type the client asked in binary and whose
  bytes are not text: NULL (``non_text = "constant"``: a valid constant of the type,
  text format only), so every client still decodes the row.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .detectors import Detector
from .lineage import StatementLineage, Taint
from .replace import Replace, redactor, replacer
from .rewrite import Action, MaskedColumn, RowMask, constant_action, detector_action, text_action

_U16 = struct.Struct("!H")
_FIELD = struct.Struct("!IhIhih")

# Valid text-format values of common non-text types (non_text = "constant").
CONSTANTS: dict[int, bytes] = {
    16: b"f",
    20: b"0",
    21: b"0",
    23: b"0",
    700: b"0",
    701: b"0",
    1700: b"0",
    1082: b"1900-01-01",
    1083: b"00:00:00",
    1114: b"1900-01-01 00:00:00",
    1184: b"1900-01-01 00:00:00+00",
    114: b"null",
    3802: b"null",
    2950: b"00000000-0000-0000-0000-000000000000",
}


@dataclass(frozen=True)
class Field:
    name: str
    table_oid: int
    attnum: int
    type_oid: int
    format: int


def parse_row_description(body: bytes, codec: str = "utf-8") -> list[Field]:
    (count,) = _U16.unpack_from(body, 0)
    offset = 2
    fields: list[Field] = []
    for _ in range(count):
        end = body.index(b"\x00", offset)
        name = body[offset:end].decode(codec, "replace")
        table_oid, attnum, type_oid, _size, _mod, fmt = _FIELD.unpack_from(body, end + 1)
        fields.append(Field(name, table_oid, attnum, type_oid, fmt))
        offset = end + 1 + _FIELD.size
    return fields


@dataclass(frozen=True)
class ColumnVerdict:
    """Why one column is masked: its taint, whether it was derived (full redaction),
    and a description of its source for the audit record."""

    taint: Taint
    derived: bool


class Planner:
    """Makes RowMasks for one database view (see engine.DatabaseMasking)."""

    def __init__(
        self,
        *,
        is_text: Callable[[int], bool],
        detectors: Sequence[tuple[Detector, Replace]],
        key: bytes | None,
        non_text: str,
        detector_rule: str = "detectors",
        prefilter: bool = True,
    ) -> None:
        self._prefilter = prefilter
        self._detector_rule = detector_rule  # the audit record names a detector's match by it
        self._is_text = is_text
        self._detectors = list(detectors)
        self._key = key
        self._non_text = non_text

    def mask(
        self,
        fields: Sequence[Field],
        verdicts: Sequence[ColumnVerdict | None],
        codec: str,
    ) -> RowMask | None:
        """The RowMask of a result (None: nothing in it is masked, no detector applies)."""
        is_text = self._is_text
        actions: dict[int, Action] = {}
        masked: list[MaskedColumn] = []
        detect = None
        detected: set[int] = set()
        for i, (field, verdict) in enumerate(zip(fields, verdicts, strict=True)):
            text = is_text(field.type_oid)
            if verdict is None:
                if text and self._detectors:
                    if detect is None:
                        detect = detector_action(
                            self._detectors,
                            codec,
                            prefilter=self._prefilter,
                        )
                    actions[i] = detect
                    detected.add(i)
                continue
            rule = verdict.taint.rule
            if text:
                replace = redactor(rule) if verdict.derived else replacer(rule, self._key)
                actions[i] = text_action(replace, codec)
                how = "redact" if verdict.derived and rule.action != "null" else rule.action
            elif self._non_text == "constant" and field.format == 0 and field.type_oid in CONSTANTS:
                actions[i] = constant_action(CONSTANTS[field.type_oid])
                how = "constant"
            else:
                actions[i] = constant_action(None)
                how = "null"
            masked.append(MaskedColumn(i, field.name, verdict.taint.source, rule.name, how))
        if not actions:
            return None
        mask = RowMask(len(fields), actions, masked, frozenset(detected), [f.name for f in fields])
        mask.detector_rule = self._detector_rule
        return mask


def verdict_for_computed(
    i: int, field: Field, lineage: StatementLineage, fail_closed: Taint | None
) -> ColumnVerdict | None:
    """A column the server could not trace (table OID 0)."""
    if lineage.opaque:
        return None if fail_closed is None else ColumnVerdict(fail_closed, True)
    outputs = lineage.outputs
    if outputs is not None and len(outputs) == 0:
        return None
    if outputs is not None and i < len(outputs):
        taint = outputs[i]
        return None if taint is None else ColumnVerdict(taint, True)
    return None if lineage.any is None else ColumnVerdict(lineage.any, True)
