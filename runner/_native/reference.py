"""The Python twins of the C lane's readers that no other Python code reads alike.

The C lane takes a client's read only in two shapes; these functions say, in
Python, exactly which reads those are. They are the reference: the C readers
(runner/_native/_contract.c) are the fast copies, and
tests/native/test_native_properties.py requires both to give the same answer on
random and mutated input. Nothing on the proxy's path calls these.
"""

from __future__ import annotations

from typing import NamedTuple

from runner.gateway import wire
from runner.gateway.policy.guard import needs_literal_guard


class OneShot(NamedTuple):
    """Where the parts of the extended protocol's one-shot shape are in a read."""

    text_at: int  # the Parse text: data[text_at : text_at + text_size]
    text_size: int
    described: bool  # a Describe of the portal came between Bind and Execute
    execute_at: int  # the Execute message: data[execute_at:execute_end]
    execute_end: int


def messages(data: bytes) -> list[tuple[int, int, int]] | None:
    """(kind, start, end) of each message of ``data``; None unless ``data`` is whole
    messages and nothing else."""
    found: list[tuple[int, int, int]] = []
    position = 0
    while position < len(data):
        if len(data) - position < 5:
            return None
        length = int.from_bytes(data[position + 1 : position + 5], "big")
        end = position + 1 + length
        if length < 4 or end > len(data):
            return None
        found.append((data[position], position, end))
        position = end
    return found


def one_shot_shape(data: bytes) -> OneShot | None:
    """``data`` is exactly Parse (unnamed statement: name, text, parameter types and
    nothing after them), Bind (unnamed portal of the unnamed statement), optionally
    Describe (the unnamed portal), Execute (the unnamed portal, no row limit) and
    Sync: where its parts are; else None."""
    parts = messages(data)
    if parts is None:
        return None
    kinds = bytes(kind for kind, _, _ in parts)
    described = kinds == bytes([wire.PARSE, wire.BIND, wire.DESCRIBE, wire.EXECUTE, wire.SYNC])
    if not described and kinds != bytes([wire.PARSE, wire.BIND, wire.EXECUTE, wire.SYNC]):
        return None
    bodies = [data[start + 5 : end] for _, start, end in parts]
    parse = bodies[0]
    text_end = parse.find(b"\x00", 1)
    if parse[:1] != b"\x00" or text_end < 0:
        return None
    types = parse[text_end + 1 :]
    count = int.from_bytes(types[:2], "big", signed=True)
    if len(types) < 2 or count < 0 or len(types) != 2 + 4 * count:
        return None
    if bodies[1][:2] != b"\x00\x00":  # portal "", statement ""; the rest is the server's
        return None
    if described and bodies[2] != b"P\x00":
        return None
    if bodies[-2] != b"\x00\x00\x00\x00\x00" or bodies[-1] != b"":  # Execute "", 0; Sync
        return None
    _, execute_at, execute_end = parts[-2]
    return OneShot(6, text_end - 1, described, execute_at, execute_end)


def lane_query_text(message: bytes) -> str | None:
    """The text of ``message`` when it is one whole simple Query whose literal mask the
    lane may look up in its cache: ASCII (other bytes are read in the client's
    encoding, by Python) and holding no literal guard word (such a text is decided
    statement by statement, never from a cache). None: the relay decides it."""
    if (
        len(message) < 6
        or message[0] != wire.QUERY
        or int.from_bytes(message[1:5], "big") + 1 != len(message)
        or message[-1] != 0
    ):
        return None
    body = message[5:-1]
    if not body.isascii():
        return None
    text = body.decode("ascii")
    return None if needs_literal_guard(text) else text
