"""A small raw PostgreSQL protocol client for tests about exact bytes: the
authentication flow, SQLSTATEs, and what a client receives message by message."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Sequence

import scramp

from runner.gateway import wire


class RawClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.received = bytearray()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, *messages: bytes) -> None:
        self.sock.sendall(b"".join(messages))

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed by the proxy")
            data += chunk
        self.received += data
        return data

    def message(self) -> tuple[str, bytes]:
        kind, length = struct.unpack("!cI", self._exactly(5))
        return kind.decode(), self._exactly(length - 4)

    def until(self, *kinds: str) -> list[tuple[str, bytes]]:
        got = []
        while True:
            kind, body = self.message()
            got.append((kind, body))
            if kind in kinds:
                return got

    def startup(
        self,
        user: str,
        database: str,
        secret: str,
        *,
        version: int = wire.PROTOCOL_3_0,
        extra: dict[str, str] | None = None,
    ) -> list[tuple[str, bytes]]:
        """StartupMessage and SCRAM; every message up to ReadyForQuery or ErrorResponse."""
        params = {"user": user, "database": database, **(extra or {})}
        self.send(wire.startup_message(params, version))
        scram: scramp.ScramClient | None = None
        got = []
        while True:
            kind, body = self.message()
            got.append((kind, body))
            if kind in ("Z", "E"):
                return got
            if kind != "R":
                continue
            code, data = wire.parse_authentication(body)
            if code == wire.AUTH_SASL:
                scram = scramp.ScramClient(["SCRAM-SHA-256"], user, secret)
                first = scram.get_client_first().encode()
                self.send(wire.sasl_initial_response("SCRAM-SHA-256", first))
            elif code == wire.AUTH_SASL_CONTINUE:
                assert scram is not None
                scram.set_server_first(data.decode())
                self.send(wire.password_message(scram.get_client_final().encode()))
            elif code == wire.AUTH_SASL_FINAL:
                assert scram is not None
                scram.set_server_final(data.decode())
            elif code == wire.AUTH_CLEARTEXT:
                self.send(wire.password_message(secret.encode() + b"\x00"))

    def query(self, text: str) -> list[tuple[str, bytes]]:
        self.send(wire.query(text))
        return self.until("Z")


def error_of(messages: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    for kind, body in messages:
        if kind == "E":
            return wire.parse_error_fields(body)
    raise AssertionError(f"no ErrorResponse in {[k for k, _ in messages]}")


def auth_codes(messages: Sequence[tuple[str, bytes]]) -> list[str]:
    """The flow as message types, with the authentication request code for 'R'."""
    flow = []
    for kind, body in messages:
        if kind == "R":
            flow.append(f"R{wire.parse_authentication(body)[0]}")
        elif kind == "E":
            flow.append("E" + wire.parse_error_fields(body).get("C", ""))
        else:
            flow.append(kind)
    return flow


def bind(portal: bytes, statement: bytes, params: Sequence[bytes] = ()) -> bytes:
    body = portal + b"\x00" + statement + b"\x00" + struct.pack("!h", 0)
    body += struct.pack("!h", len(params))
    for param in params:
        body += struct.pack("!i", len(param)) + param
    body += struct.pack("!h", 0)
    return wire.message(wire.BIND, body)


def execute(portal: bytes = b"", max_rows: int = 0) -> bytes:
    return wire.message(wire.EXECUTE, portal + b"\x00" + struct.pack("!i", max_rows))


def describe_portal(portal: bytes = b"") -> bytes:
    return wire.message(wire.DESCRIBE, b"P" + portal + b"\x00")
