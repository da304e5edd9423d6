"""Reading and rewriting the SQLite store's audit journal behind the store's back.

The journal (``<state file>.audit.jsonl``) is one JSON object per line; tests
tamper with it the way an attacker with file access would: in place (the
store's open descriptor keeps seeing the same file), line by line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.gateway.store.journal import JOURNAL_SUFFIX
from runner.plan.model import canonical_json


def journal_path(state: str | Path) -> Path:
    """The journal beside a state file, given the file or its ``sqlite:///`` URL."""
    text = str(state)
    return Path(text.removeprefix("sqlite://") + JOURNAL_SUFFIX)


def read_lines(path: Path) -> list[bytes]:
    """The journal's lines without their newlines (a torn last line included)."""
    return path.read_bytes().splitlines()


def read_entries(path: Path) -> list[dict[str, Any]]:
    """Every line as its JSON object."""
    return [json.loads(line) for line in read_lines(path)]


def encode(fields: dict[str, Any]) -> bytes:
    """A line in the store's own layout: the canonical body, then ``hash``."""
    body = {name: value for name, value in fields.items() if name != "hash"}
    text = canonical_json(body)[:-1] + ',"hash":' + json.dumps(fields["hash"]) + "}"
    return text.encode()


def write_lines(path: Path, lines: list[bytes]) -> None:
    """Rewrite the journal in place (not a rename: the store's descriptor sees it)."""
    with path.open("r+b") as handle:
        handle.truncate(0)
        handle.write(b"".join(line + b"\n" for line in lines))


def edit_entry(path: Path, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the entry with ``seq`` and write it back."""
    lines = read_lines(path)
    for n, line in enumerate(lines):
        fields = json.loads(line)
        if fields["seq"] == seq:
            change(fields)
            lines[n] = encode(fields)
            write_lines(path, lines)
            return
    raise AssertionError(f"no entry {seq} in {path}")


def delete_entries(path: Path, *seqs: int) -> None:
    write_lines(path, [line for line in read_lines(path) if json.loads(line)["seq"] not in seqs])
