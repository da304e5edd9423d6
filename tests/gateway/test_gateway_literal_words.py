"""Through the real gateway: a read whose verdict hangs on a literal's value is never
answered from a cache keyed by the literal mask.

``SELECT to_regclass('public.patients')`` is a plain read, allowed and cached (by its
mask, with the literal replaced); ``SELECT to_regclass('signoff_guard.granted')`` has the
same mask but names the server-side guard's schema inside a string, which SO512 refuses.
Both through the Python relay and the C lane (allowed reads outside a transaction).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_harness import Gateway, running_gateway
from pgclient import RawClient, error_of

from runner.gateway import wire


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as gw:
        yield gw


@pytest.mark.parametrize("lane", ["1", "0"])
def test_a_cached_shape_does_not_answer_for_the_guard_schema(
    gateway: Gateway, lane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_FAST_LANE", lane)
    session = gateway.session()
    client = RawClient(gateway.pg_port)
    try:
        started = client.startup(session["session_id"], "ehr", session["secret"])
        assert started[-1][0] == "Z", started
        for _ in range(3):  # allowed, then answered from the caches
            client.send(wire.query("SELECT to_regclass('public.patients')"))
            answer = client.until("Z")
            assert "E" not in [kind for kind, _ in answer], error_of(answer)
        client.send(wire.query("SELECT to_regclass('signoff_guard.granted')"))
        fields = error_of(client.until("Z"))
    finally:
        client.close()
    assert fields["C"] == "42501", fields
    assert "SO512" in fields["M"], fields
