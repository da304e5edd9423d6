"""The client socket before the relay: what the proxy's own startup buffer must get right.

runner.gateway.proxy.stream keeps the bytes a client sent beyond what the startup
has read. Two things depend on that buffer, and both are seen only by a client that
sends ahead: bytes sent between an SSLRequest and the TLS handshake are refused
(they were not encrypted: CVE-2021-23214), and what a client pipelines behind its
password is the relay's, handled as if it had come later.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from certificates import make_certificate
from gateway_harness import Gateway, running_gateway
from pgclient import RawClient, auth_codes, error_of

from runner.gateway import wire


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        yield running


def _rows(messages: list[tuple[str, bytes]]) -> list[bytes]:
    """The first column of each DataRow."""
    rows = []
    for kind, body in messages:
        if kind == "D":
            (size,) = struct.unpack_from("!i", body, 2)
            rows.append(body[6 : 6 + size])
    return rows


def test_queries_pipelined_behind_the_password_are_relayed(gateway: Gateway) -> None:
    session = gateway.session()
    client = RawClient(gateway.pg_port)
    try:
        # Everything in one write: the startup, the cleartext password (the gateway asks
        # a loopback client for it) and two queries, before any answer was read.
        client.send(
            wire.startup_message({"user": session["session_id"], "database": "ehr"}),
            wire.password_message(session["secret"].encode() + b"\x00"),
            wire.query("SELECT mrn FROM patients WHERE id = 7"),
            wire.query("SELECT mrn FROM patients WHERE id = 8"),
        )
        started = client.until("Z", "E")
        first = client.until("Z")
        second = client.until("Z")
    finally:
        client.close()
    assert auth_codes(started)[:2] == ["R3", "R0"], auth_codes(started)
    assert started[-1] == ("Z", b"I")
    assert _rows(first) == [b"M7"]
    assert _rows(second) == [b"M8"]
    assert [kind for kind, _ in first] == ["T", "D", "C", "Z"]


def test_bytes_after_an_ssl_request_are_refused_before_the_handshake(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = make_certificate(tmp_path)
    with running_gateway(scratch_db_url, tmp_path, monkeypatch, tls=tls) as gateway:
        client = RawClient(gateway.pg_port)
        try:
            # The startup packet rides in the same write as the SSLRequest: in clear.
            client.send(
                wire.ssl_request(), wire.startup_message({"user": "someone", "database": "ehr"})
            )
            refused = client.message()
            with pytest.raises((ConnectionError, OSError)):
                client.message()  # and the connection is closed
        finally:
            client.close()
        assert refused[0] == "E"  # not 'S': no handshake was offered
        error = error_of([refused])
        assert error["C"] == "08P01"
        assert error["M"] == "received unencrypted data after SSL request"

        # The same request alone is answered 'S' (the refusal is about the extra bytes).
        client = RawClient(gateway.pg_port)
        try:
            client.send(wire.ssl_request())
            assert client.sock.recv(1) == b"S"
        finally:
            client.close()
