"""The C fast lane never carries a masked session's statements (it relays rows as
they are): with SIGNOFF_FAST_LANE on, repeated reads of a masked role are decided
and relayed by Python, masked; the same reads by a role that is not masked are
carried by the lane (so the counters below do see the lane when it carries)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_harness import Gateway
from masking_harness import SSNS, deployer, leaked, masking_gateway, migrator
from pgclient import RawClient

from runner._native.loader import native
from runner.gateway.service import GatewayService

pytestmark = pytest.mark.skipif(native is None, reason="the C extension is not built")


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    monkeypatch.setenv("SIGNOFF_FAST_LANE", "1")
    with masking_gateway(scratch_db_url, tmp_path, monkeypatch, roles='"migrator"') as running:
        yield running


def service_of(gateway: Gateway) -> GatewayService:
    service = gateway.running.running.service
    assert service is not None
    return service


def repeated_reads(gateway: Gateway, session: dict[str, Any]) -> tuple[bytes, int, int]:
    """(bytes received, lane entries written, statements the lane decided) for the
    same read run 20 times on one raw connection."""
    service = service_of(gateway)
    assert service.fast_lanes
    entries, decided = service.writer.stats.lane_entries, service.writer.lane_queue.decided
    client = RawClient(gateway.pg_port)
    try:
        started = client.startup(session["session_id"], "ehr", session["secret"])
        assert started[-1][0] == "Z", started
        time.sleep(0.1)  # the relay (and its lane) takes the socket after the startup
        for _ in range(20):
            got = client.query("SELECT id, ssn FROM ehr.patients WHERE id = 1")
            assert [k for k, _ in got] == ["T", "D", "C", "Z"], got
        received = bytes(client.received)
    finally:
        client.close()
    return (
        received,
        service.writer.stats.lane_entries - entries,
        service.writer.lane_queue.decided - decided,
    )


def test_the_lane_never_carries_a_masked_session(gateway: Gateway) -> None:
    received, entries, decided = repeated_reads(gateway, migrator(gateway))
    assert (entries, decided) == (0, 0)
    assert received.count(b"***-**-6789") == 20
    assert leaked(SSNS, received) == []


def test_the_lane_carries_a_role_that_is_not_masked(gateway: Gateway) -> None:
    received, entries, decided = repeated_reads(gateway, deployer(gateway))
    assert entries > 0 and decided > 0  # the lane took the repeats
    assert received.count(b"123-45-6789") == 20  # this role's results are not masked
