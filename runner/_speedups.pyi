"""Type stubs for runner/_speedups.c (the gateway's hot path in C)."""

from collections.abc import Callable
from typing import Any

def literal_shape(sql: str, /) -> tuple[str, int, int] | None: ...
def chain_lines(
    prepared: list[tuple[Any, ...]], last_seq: int, last_hash: str, ts: str, /
) -> tuple[bytes, str]: ...
def journal_append(
    fd: int,
    prepared: list[tuple[Any, ...]],
    last_seq: int,
    last_hash: str,
    known_end: int,
    sync: bool,
    /,
) -> tuple[int, str] | None: ...
def sha256_hex(data: bytes, portable: bool = False, /) -> str: ...

# runner/_lane.c
class AuditQueue:
    closed: bool
    decided: int
    def __init__(self, wake: Callable[[], None], /) -> None: ...
    def __len__(self) -> int: ...
    def take(self) -> list[tuple[Any, ...]]: ...
    def deliver(self, items: list[tuple[Any, ...]], first_seq: int | None, /) -> None: ...
    def close(self) -> None: ...

class Lane:
    enabled: int
    quiet: int
    holding: bool
    in_flight: bool
    def __init__(
        self,
        conn: Any,
        client_write: Callable[[bytes], object],
        upstream_write: Callable[[bytes], object],
        queue: AuditQueue,
        session_id: str,
        shapes: dict[str, str],
        texts: dict[str, tuple[str, Any]],
        backlog_max: int,
    ) -> None: ...
    def client_data(self, data: bytes, /) -> None: ...
    def upstream_data(self, data: bytes, /) -> None: ...
    def carry(
        self, message: bytes, entry_data: str, txn: int, quiet_when_idle: bool, /
    ) -> bool: ...
    def one_shot(self, message: bytes, /) -> bytes | None: ...
    def carry_one_shot(
        self, message: bytes, decision: Any, entry_data: str, txn: int, quiet_when_idle: bool, /
    ) -> bool: ...
    def end(self) -> None: ...

def outcome_data(tag: str, duration_us: int, /) -> str: ...
