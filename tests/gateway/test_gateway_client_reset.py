"""A client that resets its connection while a large answer streams to it, on the
loop `signoff gateway serve` runs (uvloop): the gateway's log has no traceback and
it goes on serving. What the report showed: uvloop closes the client transport on
the failed write (ECONNRESET), the upstream's bytes already read are relayed to it
in the same callback, and uvloop raises 'RuntimeError: ... the handler is closed'
from the write, logged with its traceback as a fatal error of the upstream's
protocol. A client that finishes politely (Terminate, FIN) never shows it: its
socket takes writes until the RST comes back; SO_LINGER 0 sends the RST at once."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import psycopg
from oidc_issuer import OidcIssuer
from pgclient import RawClient
from test_gateway_deploy import (
    _config,
    _dbname,
    _exchange,
    _free_port,
    _serve,
    _wait_healthy,
    upstream,
)

from runner.gateway import wire

__all__ = ["upstream"]  # the fixture, from the deployment tests

LARGE_ANSWER = "SELECT repeat('x', 2000) FROM generate_series(1, 200000)"  # about 400 MB
ROUNDS = 8


def reset_mid_answer(port: int, session: dict[str, str]) -> None:
    """Ask for a large answer, read some of it (the gateway writing flat out, not
    paused by a full socket), then close with an RST."""
    client = RawClient(port)
    client.sock.settimeout(30)
    assert client.startup(session["session_id"], "ehr", session["secret"])[-1][0] == "Z"
    client.send(wire.query(LARGE_ANSWER))
    got = 0
    while got < 4 << 20:
        got += len(client.sock.recv(1 << 16))
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.sock.close()


def test_a_client_reset_mid_answer_leaves_no_traceback_and_others_are_served(
    upstream: str, tmp_path: Path
) -> None:
    with OidcIssuer() as github, OidcIssuer(style="gitlab", path="/gl") as gitlab:
        http, pg = _free_port(), _free_port()
        config = _config(
            tmp_path / "gateway.toml",
            dbname=_dbname(upstream),
            state_url=f"sqlite:///{tmp_path / 'state.db'}",
            github=github.issuer,
            gitlab=gitlab.issuer,
            http=f"127.0.0.1:{http}",
            pg=f"127.0.0.1:{pg}",
        )
        log = tmp_path / "serve.log"
        process = _serve(config, log)
        try:
            _wait_healthy(f"http://127.0.0.1:{http}", process, log)
            session = _exchange(f"http://127.0.0.1:{http}", github.token()).json()
            for _ in range(ROUNDS):
                reset_mid_answer(pg, session)
            with psycopg.connect(  # the gateway still serves, and the session too
                host="127.0.0.1",
                port=pg,
                user=session["session_id"],
                password=session["secret"],
                dbname="ehr",
                connect_timeout=20,
            ) as other:
                assert other.execute("SELECT 1").fetchone() == (1,)
        finally:
            process.terminate()
            process.wait(30)
    text = log.read_text()
    assert "handler is closed" not in text, text
    assert "Traceback" not in text, text
