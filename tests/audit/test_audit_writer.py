"""The audit writer's two ways in: awaited (``append``, or ``append_now`` off the
loop) and fire-and-forget (``submit``, optionally told on the loop), in both modes,
on both stores: each caller gets its own seqs, in order, and the chain verifies."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.audit.chain import EntryKind, NewEntry
from runner.audit.verify import verify_chain
from runner.audit.writer import AuditWriter
from runner.gateway.model import StateStore
from runner.gateway.store import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/state.db"
    else:
        url = request.getfixturevalue("scratch_db_url")
    opened = open_store(url)
    yield opened
    opened.close()


def entry(session: str, n: int) -> NewEntry:
    return NewEntry(EntryKind.STATEMENT, session, {"n": n})


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_submit_tells_done_on_the_loop_and_append_now_works_off_it(
    store: StateStore, inline: bool
) -> None:
    writer = AuditWriter(store, inline=inline)
    told: list[tuple[list[int] | None, bool]] = []
    from_thread: list[int] = []

    async def scenario() -> list[int]:
        loop_thread = threading.current_thread()

        def done(seqs: list[int] | None) -> None:
            told.append((seqs, threading.current_thread() is loop_thread))

        writer.submit([entry("so_a", 0), entry("so_a", 1)], done)
        writer.submit([entry("so_b", 0)])  # nobody waits
        writer.submit([], done)  # told at once: nothing to write
        awaited = await writer.append([entry("so_c", 0)])
        # A worker thread (the HTTP API's exchange, say) appends while the loop runs.
        await asyncio.to_thread(lambda: from_thread.extend(writer.append_now([entry("so_d", 0)])))
        for _ in range(100):
            if len(told) == 2:
                break
            await asyncio.sleep(0.01)
        return awaited

    try:
        awaited = asyncio.run(scenario())
    finally:
        writer.close()
    assert told[0] == ([], True)
    assert told[1] == ([1, 2], True)  # on the loop's thread, in the first write
    entries = store.entries()
    assert verify_chain(entries).ok and len(entries) == 5
    by_seq = {e.seq: e for e in entries}
    assert [by_seq[s].session_id for s in (*awaited, *from_thread)] == ["so_c", "so_d"]
    assert [e.session_id for e in entries[:3]] == ["so_a", "so_a", "so_b"]  # in order


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_a_closed_writer_refuses_every_way_in(store: StateStore, inline: bool) -> None:
    writer = AuditWriter(store, inline=inline)
    writer.close()

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="closed"):
            await writer.append([entry("so_a", 0)])
        with pytest.raises(RuntimeError, match="closed"):
            writer.submit([entry("so_a", 0)])
        with pytest.raises(RuntimeError, match="closed"):
            writer.submit([entry("so_a", 0)], lambda seqs: None)

    asyncio.run(scenario())
    with pytest.raises(RuntimeError, match="closed"):
        writer.append_now([entry("so_a", 0)])
    assert writer.closed and store.entries() == []
