"""The client's authentication to the gateway, and what its startup may pass on.

SCRAM-SHA-256, server side: scramp's ScramServer refuses a client-first-message
with an empty user name ("n=,"), which is what libpq sends (PostgreSQL takes the
user from the startup packet). The server side is a few lines of RFC 5802 /
RFC 7677 over the session's stored verifier, so it is done here. The gateway's
own login to the upstream server (the client side of SCRAM, with the held
credential) is runner.gateway.upstream's, through scramp's ScramClient.

Startup parameters (and ``options`` settings) a client may pass on to the upstream:
presentation and per-session limits, nothing that changes who runs what. Anything
else is refused rather than silently dropped.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
from typing import Any

from runner.gateway import wire
from runner.gateway.model import ScramVerifier
from runner.gateway.proxy.stream import ClientStream

AUTH_MESSAGE_MAX = 1 << 16

ALLOWED_SETTINGS = frozenset(
    {
        "application_name",
        "client_encoding",
        "datestyle",
        "timezone",
        "intervalstyle",
        "extra_float_digits",
        "search_path",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
        "client_min_messages",
        "bytea_output",
        "standard_conforming_strings",
        "default_transaction_isolation",
        "default_transaction_read_only",
        "default_transaction_deferrable",
        "jit",
        "work_mem",
        "maintenance_work_mem",
        "geqo",
    }
)


# -- startup parameters -------------------------------------------------------------------


def split_options(options: str) -> list[str]:
    """PostgreSQL's pg_split_opts: whitespace separates, backslash escapes."""
    words: list[str] = []
    current: list[str] = []
    escaped = False
    for char in options:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def option_settings(options: str) -> list[str] | None:
    """The GUC names an ``options`` string sets, None when it is not only -c/-- settings."""
    words = split_options(options)
    names: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            setting = words[i + 1]
            i += 2
        elif word.startswith("-c") or word.startswith("--"):
            setting = word[2:]
            i += 1
        else:
            return None
        name, equals, _ = setting.partition("=")
        if not equals:
            return None
        names.append(name.strip().lower().replace("-", "_"))
    return names


def forwarded_parameters(params: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The startup parameters passed on to the upstream, and the first one refused
    (None: none was)."""
    forwarded: dict[str, str] = {}
    for name, value in params.items():
        lowered = name.lower()
        if lowered in ("user", "database") or lowered.startswith("_pq_."):
            continue
        if lowered == "replication":
            if value.lower() in ("false", "off", "no", "0"):
                continue
            return {}, name
        if lowered == "options":
            settings = option_settings(value)
            if settings is None:
                return {}, name
            bad = [s for s in settings if s not in ALLOWED_SETTINGS]
            if bad:
                return {}, f"options: {bad[0]}"
            if settings:
                forwarded[name] = value
            continue
        if lowered not in ALLOWED_SETTINGS:
            return {}, name
        forwarded[name] = value
    return forwarded, None


def loopback(peer: Any) -> bool:
    """Whether a peer address (as the transport's ``peername``) is a loopback one."""
    try:
        return ipaddress.ip_address(str(peer[0]).split("%")[0]).is_loopback
    except (ValueError, TypeError, IndexError):
        return False


# -- SCRAM-SHA-256, server side ---------------------------------------------------------------


class ScramFailed(Exception):
    pass


class ScramExchange:
    def __init__(self, verifier: ScramVerifier) -> None:
        self.verifier = verifier
        self.gs2_header = ""
        self.client_first_bare = ""
        self.server_first = ""
        self.nonce = ""

    def first(self, message: bytes) -> bytes:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise ScramFailed("client-first-message is not UTF-8") from None
        flag = text[:1]
        if flag not in ("n", "y"):  # 'p': channel binding, which is not offered
            raise ScramFailed("unsupported channel binding flag")
        first_comma = text.find(",")
        second_comma = text.find(",", first_comma + 1)
        if first_comma != 1 or second_comma != 2:  # no authzid
            raise ScramFailed("malformed gs2 header")
        self.gs2_header = text[: second_comma + 1]
        bare = text[second_comma + 1 :]
        parts = bare.split(",")
        if len(parts) < 2 or not parts[0].startswith("n=") or not parts[1].startswith("r="):
            raise ScramFailed("malformed client-first-message")
        client_nonce = parts[1][2:]
        if not client_nonce or any(c < "!" or c > "~" for c in client_nonce):
            raise ScramFailed("invalid client nonce")
        self.client_first_bare = bare
        self.nonce = client_nonce + base64.b64encode(secrets.token_bytes(18)).decode("ascii")
        salt = base64.b64encode(self.verifier.salt).decode("ascii")
        self.server_first = f"r={self.nonce},s={salt},i={self.verifier.iterations}"
        return self.server_first.encode("ascii")

    def final(self, message: bytes) -> bytes:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise ScramFailed("client-final-message is not UTF-8") from None
        cut = text.rfind(",p=")
        if cut < 0:
            raise ScramFailed("client-final-message has no proof")
        without_proof = text[:cut]
        try:
            proof = base64.b64decode(text[cut + 3 :], validate=True)
        except ValueError:
            raise ScramFailed("invalid proof encoding") from None
        attributes = without_proof.split(",")
        expected_binding = "c=" + base64.b64encode(self.gs2_header.encode("utf-8")).decode("ascii")
        if len(attributes) < 2 or attributes[0] != expected_binding:
            raise ScramFailed("channel binding does not match")
        if attributes[1] != "r=" + self.nonce:
            raise ScramFailed("nonce does not match")
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        stored_key = self.verifier.stored_key
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        if len(proof) != len(signature):
            raise ScramFailed("invalid proof length")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key):
            raise ScramFailed("proof does not verify")
        server_signature = hmac.new(self.verifier.server_key, auth_message, "sha256").digest()
        return b"v=" + base64.b64encode(server_signature)


# -- the exchanges with the client ------------------------------------------------------------


async def read_auth_message(stream: ClientStream) -> bytes:
    kind, body = await wire.read_message(stream, max_length=AUTH_MESSAGE_MAX)
    if kind != wire.PASSWORD:
        raise wire.ProtocolError(f"expected password response, got message type {chr(kind)!r}")
    return body


async def auth_scram(
    stream: ClientStream, verifier: ScramVerifier, out: list[bytes]
) -> bytes | None:
    """The SCRAM exchange up to the proof check: server-final-message, or None.
    ``out`` holds what goes to the client before the SASL request (it is sent)."""
    out.append(wire.authentication_sasl(["SCRAM-SHA-256"]))
    stream.write(b"".join(out))
    out.clear()
    await stream.drain()
    mechanism, client_first = wire.parse_sasl_initial_response(await read_auth_message(stream))
    if mechanism != "SCRAM-SHA-256":
        raise wire.ProtocolError("client selected an invalid SASL authentication mechanism")
    exchange = ScramExchange(verifier)
    try:
        server_first = exchange.first(client_first)
    except ScramFailed:
        return None
    stream.write(wire.authentication_sasl_continue(server_first))
    await stream.drain()
    client_final = await read_auth_message(stream)
    try:
        return exchange.final(client_final)
    except ScramFailed:
        return None


async def auth_cleartext(
    stream: ClientStream, verifier: ScramVerifier, out: list[bytes]
) -> bytes | None:
    """The secret asked for in cleartext (TLS or loopback only), checked against the
    verifier: b"" when it matches (there is no server-final-message), else None."""
    out.append(wire.authentication_cleartext())
    stream.write(b"".join(out))
    out.clear()
    await stream.drain()
    body = await read_auth_message(stream)
    secret = body.rstrip(b"\x00").decode("utf-8", "replace")
    matches = await asyncio.to_thread(verifier.matches, secret)
    return b"" if matches else None
