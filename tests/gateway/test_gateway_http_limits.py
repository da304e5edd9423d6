"""What one HTTP client can hold: half-sent request heads are closed after
listen.http_header_timeout, a trickled body ends in 408 after
listen.http_body_timeout, and connections beyond listen.http_max_connections get
503, while other clients are still answered. Bounded loops, loopback only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_gateway_startup import CONFIG, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
LIMITS = (
    'http_header_timeout = "1s"\nhttp_body_timeout = "1s"\nhttp_max_connections = 8\n'
    'pg_startup_timeout = "1s"\npg_max_connections = 3'
)


@pytest.fixture
def ports(tmp_path: Path) -> Iterator[tuple[str, int]]:
    http, pg = free_port(), free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        CONFIG.format(state=tmp_path / "gw.db", http=http, pg=pg, signing_key="", tls=LIMITS)
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "gateway", "serve", "--config", str(config)],
        env={**os.environ, "SIGNOFF_TEST_STARTUP_PASSWORD": "pw"},
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{http}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            pytest.fail("the gateway did not start")
        yield url, pg
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def half_open(port: int, data: bytes) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(data)
    return conn


def closed_by_server(conn: socket.socket, within: float) -> bool:
    conn.settimeout(within)
    try:
        return conn.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.fixture
def http_url(ports: tuple[str, int]) -> str:
    return ports[0]


def test_half_sent_request_heads_are_closed_and_others_still_answered(http_url: str) -> None:
    port = int(http_url.rsplit(":", 1)[1])
    slow = [half_open(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") for _ in range(5)]
    try:
        assert httpx.get(http_url + "/healthz", timeout=5).status_code == 200
        assert all(closed_by_server(conn, within=4.0) for conn in slow)
    finally:
        for conn in slow:
            conn.close()


def test_a_trickled_body_ends_in_408(http_url: str) -> None:
    port = int(http_url.rsplit(":", 1)[1])
    conn = half_open(
        port,
        b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"token": ',
    )
    try:
        conn.settimeout(5)
        answer = b""
        while chunk := conn.recv(4096):  # the head and the body may come apart
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"request-timeout" in answer
    finally:
        conn.close()


def test_connections_beyond_the_limit_get_503(http_url: str) -> None:
    port = int(http_url.rsplit(":", 1)[1])
    held = [half_open(port, b"GET /healthz HTTP/1.1\r\n") for _ in range(8)]
    try:
        extra = half_open(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        extra.settimeout(5)
        assert extra.recv(1024).startswith(b"HTTP/1.1 503")
        extra.close()
    finally:
        for conn in held:
            conn.close()


def test_postgresql_clients_that_never_start_are_closed_and_beyond_the_limit_refused(
    ports: tuple[str, int],
) -> None:
    _, pg = ports
    silent = [socket.create_connection(("127.0.0.1", pg), timeout=5) for _ in range(3)]
    try:
        time.sleep(0.3)  # the three are accepted before the fourth arrives
        extra = socket.create_connection(("127.0.0.1", pg), timeout=5)
        extra.settimeout(5)
        answer = extra.recv(4096)
        assert answer[:1] == b"E" and b"53300" in answer, answer  # too many clients
        extra.close()
        # Each silent client gets its startup timeout's FATAL, then the close.
        for conn in silent:
            conn.settimeout(5)
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            assert b"08006" in data and b"startup timed out" in data
    finally:
        for conn in silent:
            conn.close()
