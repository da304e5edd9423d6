"""The C row rewriter (runner/_native/_mask.c) gives the same bytes as the Python
RowMask it stands in for, whatever the rows and the masking plan."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.gateway.masking import rewrite
from runner.gateway.masking.config import MaskRule
from runner.gateway.masking.detectors import detectors
from runner.gateway.masking.replace import redactor, replacer
from runner.gateway.masking.rewrite import (
    BlindMask,
    RowMask,
    constant_action,
    detector_action,
    text_action,
)

pytestmark = pytest.mark.skipif(rewrite._native_mask is None, reason="the C extension is not built")

KEY = b"k"
ACTIONS = [
    lambda: text_action(replacer(MaskRule("a", names=("x",), action="keep_last"), KEY), "utf-8"),
    lambda: text_action(
        replacer(MaskRule("b", names=("x",), action="keep_last", keep_last=2), KEY), "utf-8"
    ),
    lambda: text_action(replacer(MaskRule("c", names=("x",), action="keep_domain"), KEY), "utf-8"),
    lambda: text_action(replacer(MaskRule("d", names=("x",), action="pseudonym"), KEY), "utf-8"),
    lambda: text_action(  # a key longer than SHA-256's block: hashed first
        replacer(MaskRule("d2", names=("x",), action="pseudonym"), b"long" * 40), "utf-8"
    ),
    lambda: text_action(redactor(MaskRule("e", names=("x",))), "utf-8"),
    lambda: text_action(replacer(MaskRule("f", names=("x",), action="null"), KEY), "utf-8"),
    lambda: constant_action(None),
    lambda: constant_action(b"1900-01-01"),
    lambda: detector_action(
        [(d, replacer(MaskRule("g", names=("x",)), KEY)) for d in detectors(("ssn", "email"))],
        "utf-8",
    ),
]

values = st.one_of(
    st.none(),
    st.text(max_size=30).map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"123-45-6789", b"ada@example.org", b"", b"@x", b"ab", b"a@b.c"]),
)


def data_row(fields: list[bytes | None]) -> bytes:
    body = struct.pack("!H", len(fields))
    for value in fields:
        body += b"\xff\xff\xff\xff" if value is None else struct.pack("!i", len(value)) + value
    return b"D" + struct.pack("!I", len(body) + 4) + body


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 6),
    chosen=st.lists(st.tuples(st.integers(0, 5), st.integers(0, len(ACTIONS) - 1)), max_size=6),
    rows=st.lists(st.lists(values, min_size=1, max_size=7), min_size=1, max_size=8),
    tail=st.sampled_from([b"", b"C\x00\x00\x00\x0dSELECT 1\x00", b"D\x00\x00"]),
)
def test_c_and_python_give_the_same_bytes(
    width: int, chosen: list[tuple[int, int]], rows: list[list[bytes | None]], tail: bytes
) -> None:
    kinds = {p: a for p, a in chosen if p < width}
    actions = {p: ACTIONS[a]() for p, a in kinds.items()}
    detected = frozenset(p for p, a in kinds.items() if a == len(ACTIONS) - 1)
    data = b"".join(data_row(r) for r in rows) + tail
    for mask in (RowMask(width, actions, [], detected), BlindMask()):
        python = RowMask.rewrite(mask, data, 0, len(data))
        hits = set(mask.hits)
        mask.hits.clear()
        native = mask._rewrite_c(data, 0, len(data))
        assert native == python
        assert mask.hits & mask.detected == hits  # a detector's match: in the audit record
