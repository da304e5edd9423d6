"""Type stubs for runner/_speedups.c (the gateway's hot path in C)."""

from typing import Any

def literal_shape(sql: str, /) -> tuple[str, int, int] | None: ...
def chain_lines(
    prepared: list[tuple[Any, ...]], last_seq: int, last_hash: str, ts: str, /
) -> tuple[bytes, str]: ...

def sha256_hex(data: bytes, portable: bool = False, /) -> str: ...
