"""PostgreSQL frontend/backend protocol 3.0: framing, builders and parsers.

Only what the gateway's proxy needs: reading startup packets and typed
messages from asyncio streams, building the backend messages the proxy
originates (authentication, errors, parameter status, key data, ready for
query) and the frontend messages the upstream connection sends, and parsing
the few message bodies the proxy looks inside (Query, Parse, Bind, Execute,
Close, Describe, CommandComplete, ErrorResponse, ParameterStatus).

Every message but the startup packets is ``Byte1(type) Int32(length incl.
itself) body``. Strings are NUL-terminated. Nothing here logs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

PROTOCOL_3_0 = 3 << 16  # 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

MAX_STARTUP_LENGTH = 10_000  # what PostgreSQL accepts (MAX_STARTUP_PACKET_LENGTH)
MAX_MESSAGE_LENGTH = 1 << 30  # PostgreSQL's own ceiling for a message (1 GB)

_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_HEADER = struct.Struct("!cI")

# -- message type bytes ------------------------------------------------------------------

# frontend
QUERY = ord("Q")
PARSE = ord("P")
BIND = ord("B")
EXECUTE = ord("E")
DESCRIBE = ord("D")
CLOSE = ord("C")
SYNC = ord("S")
FLUSH = ord("H")
TERMINATE = ord("X")
COPY_DATA = ord("d")
COPY_DONE = ord("c")
COPY_FAIL = ord("f")
FUNCTION_CALL = ord("F")
PASSWORD = ord("p")  # PasswordMessage, SASLInitialResponse, SASLResponse

# backend
AUTHENTICATION = ord("R")
BACKEND_KEY_DATA = ord("K")
PARAMETER_STATUS = ord("S")
READY_FOR_QUERY = ord("Z")
ERROR_RESPONSE = ord("E")
NOTICE_RESPONSE = ord("N")
NOTIFICATION_RESPONSE = ord("A")
COMMAND_COMPLETE = ord("C")
EMPTY_QUERY_RESPONSE = ord("I")
DATA_ROW = ord("D")
ROW_DESCRIPTION = ord("T")
NO_DATA = ord("n")
PARAMETER_DESCRIPTION = ord("t")
PARSE_COMPLETE = ord("1")
BIND_COMPLETE = ord("2")
CLOSE_COMPLETE = ord("3")
PORTAL_SUSPENDED = ord("s")
COPY_IN_RESPONSE = ord("G")
COPY_OUT_RESPONSE = ord("H")
COPY_BOTH_RESPONSE = ord("W")
NEGOTIATE_PROTOCOL_VERSION = ord("v")

# Authentication request codes (the Int32 after 'R')
AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


class ProtocolError(Exception):
    """The peer sent something that is not the protocol (or too much of it)."""


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartupPacket:
    """The first packet of a connection (no type byte): one of four kinds."""

    kind: str  # "startup" | "ssl" | "gssenc" | "cancel"
    version: int = 0  # protocol version of a StartupMessage
    parameters: Mapping[str, str] = field(default_factory=dict)
    pid: int = 0  # CancelRequest
    key: int = 0  # CancelRequest

    @property
    def major(self) -> int:
        return self.version >> 16

    @property
    def minor(self) -> int:
        return self.version & 0xFFFF


class ExactReader(Protocol):
    """What the readers below read from: an asyncio.StreamReader, or the proxy's
    own client stream (runner.gateway.proxy.stream)."""

    async def readexactly(self, n: int) -> bytes: ...


async def read_startup(reader: ExactReader) -> StartupPacket:
    """Read SSLRequest / GSSENCRequest / CancelRequest / StartupMessage.

    Raises ProtocolError for a malformed packet; asyncio.IncompleteReadError
    when the peer closes first.
    """
    header = await reader.readexactly(4)
    (length,) = _I32.unpack(header)
    if length < 8 or length > MAX_STARTUP_LENGTH:
        raise ProtocolError("invalid length of startup packet")
    body = await reader.readexactly(length - 4)
    (code,) = _I32.unpack_from(body, 0)
    if code == SSL_REQUEST_CODE and length == 8:
        return StartupPacket("ssl")
    if code == GSSENC_REQUEST_CODE and length == 8:
        return StartupPacket("gssenc")
    if code == CANCEL_REQUEST_CODE:
        if length != 16:
            raise ProtocolError("invalid length of cancel request packet")
        pid, key = struct.unpack_from("!iI", body, 4)
        return StartupPacket("cancel", pid=pid, key=key)
    return StartupPacket("startup", version=code, parameters=parse_startup_parameters(body[4:]))


def parse_startup_parameters(data: bytes) -> dict[str, str]:
    """name\\0value\\0 ... \\0 -> dict (UTF-8; a malformed list is a ProtocolError)."""
    parts = data.split(b"\x00")
    # A well-formed list ends with an empty name and the trailing NUL: [..., b"", b""].
    if len(parts) < 2 or parts[-1] != b"" or parts[-2] != b"" or len(parts) % 2 != 0:
        raise ProtocolError("invalid startup packet layout")
    try:
        words = [part.decode("utf-8") for part in parts[:-2]]
    except UnicodeDecodeError as exc:
        raise ProtocolError("startup packet is not valid UTF-8") from exc
    return dict(zip(words[0::2], words[1::2], strict=True))


async def read_message(
    reader: ExactReader, *, max_length: int = MAX_MESSAGE_LENGTH
) -> tuple[int, bytes]:
    """One typed message: (type byte, body without the header)."""
    header = await reader.readexactly(5)
    kind, length = _HEADER.unpack(header)
    if length < 4 or length - 4 > max_length:
        raise ProtocolError(f"invalid message length {length} for message type {kind!r}")
    body = await reader.readexactly(length - 4) if length > 4 else b""
    return kind[0], body


# -- building ---------------------------------------------------------------------------------


def message(kind: int, body: bytes = b"") -> bytes:
    return bytes((kind,)) + _I32.pack(len(body) + 4) + body


def cstring(value: str) -> bytes:
    return value.encode("utf-8") + b"\x00"


def authentication(code: int, data: bytes = b"") -> bytes:
    return message(AUTHENTICATION, _I32.pack(code) + data)


def authentication_ok() -> bytes:
    return authentication(AUTH_OK)


def authentication_cleartext() -> bytes:
    return authentication(AUTH_CLEARTEXT)


def authentication_sasl(mechanisms: Sequence[str]) -> bytes:
    return authentication(AUTH_SASL, b"".join(cstring(m) for m in mechanisms) + b"\x00")


def authentication_sasl_continue(data: bytes) -> bytes:
    return authentication(AUTH_SASL_CONTINUE, data)


def authentication_sasl_final(data: bytes) -> bytes:
    return authentication(AUTH_SASL_FINAL, data)


def parameter_status(name: str, value: str) -> bytes:
    return message(PARAMETER_STATUS, cstring(name) + cstring(value))


def backend_key_data(pid: int, key: int) -> bytes:
    return message(BACKEND_KEY_DATA, struct.pack("!iI", pid, key))


def ready_for_query(status: bytes = b"I") -> bytes:
    return message(READY_FOR_QUERY, status)


def negotiate_protocol_version(version: int, unsupported: Iterable[str]) -> bytes:
    names = list(unsupported)
    return message(
        NEGOTIATE_PROTOCOL_VERSION,
        _I32.pack(version) + _I32.pack(len(names)) + b"".join(cstring(n) for n in names),
    )


def _fields(
    severity: str,
    code: str,
    text: str,
    detail: str | None,
    hint: str | None,
) -> bytes:
    parts = [b"S" + cstring(severity), b"V" + cstring(severity), b"C" + cstring(code)]
    parts.append(b"M" + cstring(text))
    if detail:
        parts.append(b"D" + cstring(detail))
    if hint:
        parts.append(b"H" + cstring(hint))
    return b"".join(parts) + b"\x00"


def error_response(
    code: str,
    text: str,
    *,
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
) -> bytes:
    return message(ERROR_RESPONSE, _fields(severity, code, text, detail, hint))


def notice_response(
    text: str,
    *,
    code: str = "00000",
    severity: str = "NOTICE",
    detail: str | None = None,
    hint: str | None = None,
) -> bytes:
    return message(NOTICE_RESPONSE, _fields(severity, code, text, detail, hint))


# frontend messages (the upstream side)


def startup_message(parameters: Mapping[str, str], version: int = PROTOCOL_3_0) -> bytes:
    body = _I32.pack(version)
    body += b"".join(cstring(k) + cstring(v) for k, v in parameters.items()) + b"\x00"
    return _I32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    return _I32.pack(8) + _I32.pack(SSL_REQUEST_CODE)


def cancel_request(pid: int, key: int) -> bytes:
    return _I32.pack(16) + struct.pack("!iiI", CANCEL_REQUEST_CODE, pid, key)


def password_message(data: bytes) -> bytes:
    return message(PASSWORD, data)


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return message(PASSWORD, cstring(mechanism) + _I32.pack(len(data)) + data)


def query(text: str) -> bytes:
    return message(QUERY, cstring(text))


def parse(name: bytes, text: str, param_types: Sequence[int] = ()) -> bytes:
    body = (
        name
        + b"\x00"
        + cstring(text)
        + struct.pack(f"!h{len(param_types)}I", len(param_types), *param_types)
    )
    return message(PARSE, body)


def sync() -> bytes:
    return message(SYNC)


def terminate() -> bytes:
    return message(TERMINATE)


# -- parsing bodies ------------------------------------------------------------------------------


def _cstr(body: bytes | memoryview, start: int) -> tuple[bytes, int]:
    """The NUL-terminated bytes at start and the offset after the NUL."""
    raw = bytes(body) if isinstance(body, memoryview) else body
    end = raw.find(b"\x00", start)
    if end < 0:
        raise ProtocolError("unterminated string in message")
    return raw[start:end], end + 1


def parse_query(body: bytes) -> bytes:
    """Query: the SQL text's bytes (client encoding)."""
    text, _ = _cstr(body, 0)
    return text


@dataclass(frozen=True)
class ParseMessage:
    name: bytes
    text: bytes
    param_types: tuple[int, ...]


def parse_parse(body: bytes) -> ParseMessage:
    name, offset = _cstr(body, 0)
    text, offset = _cstr(body, offset)
    if offset + 2 > len(body):
        raise ProtocolError("truncated Parse message")
    (count,) = struct.unpack_from("!h", body, offset)
    if count < 0 or offset + 2 + 4 * count > len(body):
        raise ProtocolError("truncated Parse message")
    types = struct.unpack_from(f"!{count}I", body, offset + 2)
    return ParseMessage(name, text, tuple(types))


def parse_bind_names(body: bytes) -> tuple[bytes, bytes]:
    """Bind: (portal, statement); the parameters are not looked at."""
    portal, offset = _cstr(body, 0)
    statement, _ = _cstr(body, offset)
    return portal, statement


def parse_execute(body: bytes) -> tuple[bytes, int]:
    """Execute: (portal, max rows; 0 = no limit)."""
    portal, offset = _cstr(body, 0)
    if offset + 4 > len(body):
        raise ProtocolError("truncated Execute message")
    (max_rows,) = _I32.unpack_from(body, offset)
    return portal, max_rows


def parse_target(body: bytes) -> tuple[int, bytes]:
    """Close / Describe: (b'S'|b'P' as int, name)."""
    if not body:
        raise ProtocolError("empty Close/Describe message")
    name, _ = _cstr(body, 1)
    return body[0], name


def parse_command_tag(body: bytes | memoryview) -> str:
    tag, _ = _cstr(body, 0)
    return tag.decode("utf-8", "replace")


_ROW_COMMANDS = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE"}
)


def rows_from_tag(tag: str) -> int | None:
    """Rows a CommandComplete tag reports ("INSERT 0 3" -> 3), None when it reports none."""
    known = _TAG_ROWS.get(tag, _UNKNOWN_TAG)
    if known is not _UNKNOWN_TAG:
        return known  # type: ignore[return-value]
    rows = _rows_from_tag(tag)
    if len(_TAG_ROWS) < 4096:  # "SELECT 1" again and again
        _TAG_ROWS[tag] = rows
    return rows


_TAG_ROWS: dict[str, int | None] = {}
_UNKNOWN_TAG = object()


def _rows_from_tag(tag: str) -> int | None:
    last = tag.rfind(" ")
    if last > 0 and tag[: tag.find(" ")] in _ROW_COMMANDS:
        count = tag[last + 1 :]
        if count.isdigit():
            return int(count)
    return None


def parse_error_fields(body: bytes | memoryview) -> dict[str, str]:
    """ErrorResponse / NoticeResponse body -> {field code: value} (e.g. 'C': '42501')."""
    raw = bytes(body)
    fields: dict[str, str] = {}
    offset = 0
    while offset < len(raw) and raw[offset] != 0:
        code = chr(raw[offset])
        value, offset = _cstr(raw, offset + 1)
        fields[code] = value.decode("utf-8", "replace")
    return fields


def parse_parameter_status(body: bytes | memoryview) -> tuple[str, str]:
    name, offset = _cstr(body, 0)
    value, _ = _cstr(body, offset)
    return name.decode("utf-8", "replace"), value.decode("utf-8", "replace")


def parse_authentication(body: bytes) -> tuple[int, bytes]:
    """Authentication request: (code, the rest)."""
    if len(body) < 4:
        raise ProtocolError("truncated authentication request")
    (code,) = _I32.unpack_from(body, 0)
    return code, body[4:]


def parse_sasl_mechanisms(data: bytes) -> list[str]:
    return [m.decode("ascii", "replace") for m in data.split(b"\x00") if m]


def parse_sasl_initial_response(body: bytes) -> tuple[str, bytes]:
    """SASLInitialResponse: (mechanism, initial client response)."""
    mechanism, offset = _cstr(body, 0)
    if offset + 4 > len(body):
        raise ProtocolError("truncated SASLInitialResponse")
    (length,) = _I32.unpack_from(body, offset)
    data = body[offset + 4 :] if length >= 0 else b""
    if length >= 0 and len(data) != length:
        raise ProtocolError("SASLInitialResponse length mismatch")
    return mechanism.decode("ascii", "replace"), data


def parse_backend_key_data(body: bytes) -> tuple[int, int]:
    if len(body) != 8:
        raise ProtocolError("unexpected BackendKeyData length")
    pid, key = struct.unpack("!iI", body)
    return pid, key


# PostgreSQL encoding names -> Python codecs, for reading statement text.
_CODECS = {
    "UTF8": "utf-8",
    "UNICODE": "utf-8",
    "SQL_ASCII": "ascii",
    "LATIN1": "latin-1",
    "LATIN2": "iso8859-2",
    "LATIN3": "iso8859-3",
    "LATIN4": "iso8859-4",
    "LATIN5": "iso8859-9",
    "LATIN6": "iso8859-10",
    "LATIN7": "iso8859-13",
    "LATIN8": "iso8859-14",
    "LATIN9": "iso8859-15",
    "LATIN10": "iso8859-16",
    "WIN1250": "cp1250",
    "WIN1251": "cp1251",
    "WIN1252": "cp1252",
    "WIN1253": "cp1253",
    "WIN1254": "cp1254",
    "WIN1255": "cp1255",
    "WIN1256": "cp1256",
    "WIN1257": "cp1257",
    "WIN1258": "cp1258",
    "WIN866": "cp866",
    "WIN874": "cp874",
    "KOI8R": "koi8-r",
    "KOI8U": "koi8-u",
    "ISO_8859_5": "iso8859-5",
    "ISO_8859_6": "iso8859-6",
    "ISO_8859_7": "iso8859-7",
    "ISO_8859_8": "iso8859-8",
    "EUC_JP": "euc-jp",
    "EUC_KR": "euc-kr",
    "EUC_CN": "gb2312",
    "SJIS": "shift_jis",
    "BIG5": "big5",
    "GBK": "gbk",
    "GB18030": "gb18030",
    "UHC": "cp949",
}


def python_codec(pg_encoding: str) -> str | None:
    """The Python codec for a PostgreSQL client_encoding, None when there is none."""
    return _CODECS.get(pg_encoding.upper().replace("-", "_"))
