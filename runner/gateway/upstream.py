"""The gateway's connection to the real database, made with the held credential.

``connect()`` opens a PostgreSQL protocol 3.0 connection as ``Upstream.user``:
SSLRequest first unless ``sslmode`` is ``disable`` (TLS when the server answers
'S'; ``require`` fails when it answers 'N'), then authentication as the server
asks (SCRAM-SHA-256 through scramp's ScramClient, with channel binding when the
server offers SCRAM-SHA-256-PLUS over TLS; md5; cleartext; trust). It collects
ParameterStatus and BackendKeyData up to the first ReadyForQuery and returns
the connected streams. ``cancel()`` sends a CancelRequest for a (pid, key).

The password is only ever used to compute the authentication response: it is
not in any exception message, repr or log line this module produces.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

import scramp

from runner.gateway import wire
from runner.gateway.model import Upstream

CONNECT_TIMEOUT_S = 10.0
CANCEL_TIMEOUT_S = 5.0
READ_LIMIT = 1 << 18  # StreamReader buffer before it pauses the socket (256 KiB)
_STARTUP_MAX = 1 << 20  # startup messages (auth, parameter status, notices) are small

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class UpstreamError(Exception):
    """The upstream connection could not be made (or was lost). Never holds the password."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass(eq=False)
class UpstreamConnection:
    """A connected, authenticated upstream session, ready for queries."""

    upstream: Upstream
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parameters: dict[str, str] = field(default_factory=dict)
    # Raw ParameterStatus / NoticeResponse messages from the startup, in order,
    # ready to be relayed to a client byte for byte.
    parameter_messages: list[bytes] = field(default_factory=list)
    notice_messages: list[bytes] = field(default_factory=list)
    pid: int = 0
    key: int = 0
    transaction_status: bytes = b"I"
    tls: bool = False

    async def cancel(self, *, timeout: float = CANCEL_TIMEOUT_S) -> None:
        """Ask the server to cancel whatever this connection is running."""
        await cancel(self.upstream, self.pid, self.key, timeout=timeout)

    def abort(self) -> None:
        """Drop the connection at once (no Terminate)."""
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()

    async def close(self, *, timeout: float = 2.0) -> None:
        """Terminate politely and close; never raises."""
        writer = self.writer
        try:
            if not writer.transport.is_closing():
                writer.write(wire.terminate())
                writer.close()
            await asyncio.wait_for(writer.wait_closed(), timeout)
        except (TimeoutError, OSError, ssl.SSLError, RuntimeError):
            self.abort()


def _tls_context(sslmode: str) -> ssl.SSLContext:
    """libpq's meaning: prefer/require encrypt without verifying; verify-* verify."""
    if sslmode in ("verify-ca", "verify-full"):
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.check_hostname = sslmode == "verify-full"
        return context
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _open(
    upstream: Upstream, ssl_context: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
    """TCP (or unix socket) connection, with TLS negotiated as sslmode asks."""
    if upstream.sslmode not in SSLMODES:
        raise UpstreamError(f"unknown sslmode {upstream.sslmode!r} for the upstream")
    where = f"{upstream.host}:{upstream.port}"
    try:
        if upstream.host.startswith("/"):
            reader, writer = await asyncio.open_unix_connection(
                f"{upstream.host}/.s.PGSQL.{upstream.port}", limit=READ_LIMIT
            )
        else:
            reader, writer = await asyncio.open_connection(
                upstream.host, upstream.port, limit=READ_LIMIT
            )
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UpstreamError(f"cannot connect to the upstream {where}: {reason}") from None
    if upstream.sslmode in ("disable", "allow") or upstream.host.startswith("/"):
        return reader, writer, False
    try:
        writer.write(wire.ssl_request())
        await writer.drain()
        answer = await reader.readexactly(1)
    except (OSError, asyncio.IncompleteReadError):
        writer.close()
        raise UpstreamError(
            f"the upstream {where} closed the connection during SSL negotiation"
        ) from None
    if answer == b"N":
        if upstream.sslmode in ("require", "verify-ca", "verify-full"):
            writer.close()
            raise UpstreamError(
                f"the upstream {where} does not support TLS (sslmode={upstream.sslmode})"
            )
        return reader, writer, False
    if answer != b"S":
        writer.close()
        raise UpstreamError(f"the upstream {where} sent an invalid answer to the SSL request")
    # Anything the server sent after 'S' and before the handshake was not
    # encrypted and could have been injected (CVE-2021-23222): refuse it.
    if await _already_sent(reader):
        writer.close()
        raise UpstreamError(f"the upstream {where} sent unencrypted data after its SSL answer")
    try:
        await writer.start_tls(
            ssl_context or _tls_context(upstream.sslmode),
            server_hostname=None if upstream.sslmode != "verify-full" else upstream.host,
        )
    except (OSError, ssl.SSLError) as exc:
        writer.close()
        raise UpstreamError(f"TLS handshake with the upstream {where} failed: {exc}") from None
    return reader, writer, True


def _md5_response(user: str, password: str, salt: bytes) -> bytes:
    inner = hashlib.md5((password + user).encode("utf-8")).hexdigest()
    outer = hashlib.md5(inner.encode("ascii") + salt).hexdigest()
    return b"md5" + outer.encode("ascii") + b"\x00"


def _need_password(upstream: Upstream, method: str) -> str:
    if upstream.password is None:
        raise UpstreamError(
            f"the upstream asks for {method} authentication and no password is configured",
            sqlstate="28P01",
        )
    return upstream.password


async def connect(
    upstream: Upstream,
    *,
    parameters: Mapping[str, str] | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
    ssl_context: ssl.SSLContext | None = None,
) -> UpstreamConnection:
    """Open, authenticate and wait for the first ReadyForQuery.

    ``parameters`` are extra startup parameters (application_name,
    client_encoding...); user and database always come from ``upstream``.
    Raises UpstreamError (with the server's SQLSTATE when it sent one).
    """
    try:
        return await asyncio.wait_for(_connect(upstream, parameters or {}, ssl_context), timeout)
    except TimeoutError:
        raise UpstreamError(
            f"timed out after {timeout:g}s connecting to the upstream "
            f"{upstream.host}:{upstream.port}"
        ) from None


async def _connect(
    upstream: Upstream, parameters: Mapping[str, str], ssl_context: ssl.SSLContext | None
) -> UpstreamConnection:
    reader, writer, tls = await _open(upstream, ssl_context)
    conn = UpstreamConnection(upstream, reader, writer, tls=tls)
    try:
        await _startup(conn, {**parameters, **dict(upstream.settings)})
    except BaseException:
        conn.abort()
        raise
    return conn


async def _startup(conn: UpstreamConnection, parameters: Mapping[str, str]) -> None:
    upstream, reader, writer = conn.upstream, conn.reader, conn.writer
    startup = {k: v for k, v in parameters.items() if k not in ("user", "database")}
    writer.write(
        wire.startup_message({"user": upstream.user, "database": upstream.dbname, **startup})
    )
    scram: scramp.ScramClient | None = None
    scram_done = False
    authenticated = False
    while True:
        try:
            await writer.drain()
            kind, body = await wire.read_message(reader, max_length=_STARTUP_MAX)
        except (asyncio.IncompleteReadError, OSError):
            raise UpstreamError("the upstream closed the connection during startup") from None
        except wire.ProtocolError as exc:
            raise UpstreamError(f"the upstream broke the protocol during startup: {exc}") from None
        if kind == wire.ERROR_RESPONSE:
            fields = wire.parse_error_fields(body)
            raise UpstreamError(
                f"the upstream refused the connection: {fields.get('M', 'unknown error')}",
                sqlstate=fields.get("C"),
            )
        if kind == wire.AUTHENTICATION:
            code, data = wire.parse_authentication(body)
            if code == wire.AUTH_OK:
                if scram is not None and not scram_done:
                    raise UpstreamError(
                        "the upstream ended SCRAM authentication without proving "
                        "it knows the password"
                    )
                authenticated = True
            elif code == wire.AUTH_CLEARTEXT:
                password = _need_password(upstream, "cleartext password")
                writer.write(wire.password_message(password.encode("utf-8") + b"\x00"))
            elif code == wire.AUTH_MD5:
                password = _need_password(upstream, "md5")
                writer.write(
                    wire.password_message(_md5_response(upstream.user, password, data[:4]))
                )
            elif code == wire.AUTH_SASL:
                scram = _scram_client(conn, wire.parse_sasl_mechanisms(data))
                try:
                    first = scram.get_client_first()
                except scramp.ScramException:
                    raise UpstreamError("SCRAM authentication with the upstream failed") from None
                writer.write(
                    wire.sasl_initial_response(scram.mechanism_name, first.encode("utf-8"))
                )
            elif code == wire.AUTH_SASL_CONTINUE and scram is not None:
                try:
                    scram.set_server_first(data.decode("utf-8"))
                    final = scram.get_client_final()
                except (scramp.ScramException, UnicodeDecodeError):
                    raise UpstreamError(
                        "SCRAM authentication with the upstream failed: "
                        "invalid server-first-message"
                    ) from None
                writer.write(wire.password_message(final.encode("utf-8")))
            elif code == wire.AUTH_SASL_FINAL and scram is not None:
                try:
                    scram.set_server_final(data.decode("utf-8"))
                except (scramp.ScramException, UnicodeDecodeError):
                    raise UpstreamError(
                        "SCRAM authentication with the upstream failed: "
                        "the server's signature does not verify"
                    ) from None
                scram_done = True
            else:
                raise UpstreamError(
                    f"the upstream asks for an unsupported authentication method (code {code})"
                )
        elif kind == wire.PARAMETER_STATUS:
            name, value = wire.parse_parameter_status(body)
            conn.parameters[name] = value
            conn.parameter_messages.append(wire.message(kind, body))
        elif kind == wire.BACKEND_KEY_DATA:
            conn.pid, conn.key = wire.parse_backend_key_data(body)
        elif kind == wire.NOTICE_RESPONSE:
            conn.notice_messages.append(wire.message(kind, body))
        elif kind == wire.NEGOTIATE_PROTOCOL_VERSION:
            continue  # we ask for 3.0 and no options: nothing to give up
        elif kind == wire.READY_FOR_QUERY:
            if not authenticated:
                raise UpstreamError(
                    "the upstream sent ReadyForQuery before authentication completed"
                )
            conn.transaction_status = body[:1] or b"I"
            return
        else:
            raise UpstreamError(
                f"unexpected message {chr(kind)!r} from the upstream during startup"
            )


def _scram_client(conn: UpstreamConnection, mechanisms: list[str]) -> scramp.ScramClient:
    password = _need_password(conn.upstream, "SCRAM-SHA-256")
    ssl_object = conn.writer.get_extra_info("ssl_object") if conn.tls else None
    try:
        if ssl_object is not None and "SCRAM-SHA-256-PLUS" in mechanisms:
            # Channel binding ties the exchange to this TLS session: a man in
            # the middle cannot relay it.
            return scramp.ScramClient(
                ["SCRAM-SHA-256-PLUS"],
                conn.upstream.user,
                password,
                channel_binding=("tls-server-end-point", ssl_object),
            )
        if "SCRAM-SHA-256" not in mechanisms:
            raise UpstreamError(
                "the upstream offers no SASL mechanism the gateway supports "
                f"({', '.join(mechanisms)})"
            )
        return scramp.ScramClient(["SCRAM-SHA-256"], conn.upstream.user, password)
    except scramp.ScramException:
        raise UpstreamError(
            "SCRAM authentication with the upstream failed: "
            "the password or TLS channel cannot be used"
        ) from None


async def cancel(
    upstream: Upstream, pid: int, key: int, *, timeout: float = CANCEL_TIMEOUT_S
) -> None:
    """Send a CancelRequest for (pid, key) and wait until the server has read it.

    Best effort, as in PostgreSQL: errors are swallowed (the server never answers
    a cancel request; it just closes the connection).
    """
    # A cancel key is worth protecting like the query it cancels: encrypt when
    # the connection itself had to be encrypted; otherwise plain, like libpq.
    target = (
        upstream
        if upstream.sslmode in ("require", "verify-ca", "verify-full")
        else Upstream(upstream.host, upstream.port, upstream.dbname, upstream.user, None, "disable")
    )
    try:
        async with asyncio.timeout(timeout):
            reader, writer = (await _open(target, None))[:2]
            try:
                writer.write(wire.cancel_request(pid, key))
                await writer.drain()
                with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                    await reader.read()  # the server closes once it has acted
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except (UpstreamError, OSError, TimeoutError, ssl.SSLError):
        return


async def _already_sent(reader: asyncio.StreamReader) -> bool:
    """Whether bytes beyond what was read are already buffered, asked through the
    public API: a read of one byte finishes at once only when one is there; else it
    is cancelled before anything arrives (nothing is consumed either way that
    matters: any byte means the connection is refused)."""
    probe = asyncio.ensure_future(reader.read(1))
    await asyncio.sleep(0)
    if probe.done():
        return bool(probe.result())
    probe.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probe
    return False
