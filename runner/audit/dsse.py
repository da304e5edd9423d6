"""DSSE envelopes (Dead Simple Signing Envelope, github.com/secure-systems-lab/dsse),
signed with Ed25519.

What is signed is never the payload alone but its *pre-authentication encoding*::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

where SP is one space (0x20), LEN is the length in bytes as ASCII decimal with no
leading zeros, ``type`` is the payload type (UTF-8) and ``body`` the payload bytes.
The envelope is JSON::

    {"payload": "<base64 of body>", "payloadType": "<type>",
     "signatures": [{"keyid": "<key id>", "sig": "<base64 of the signature over PAE>"}]}

with standard base64 (RFC 4648 §4, padded); URL-safe base64 is accepted on read, as
the spec asks of verifiers.

**Key id.** ``keyid`` is the lowercase hex sha256 of the Ed25519 public key's 32 raw
bytes (``PublicFormat.Raw``), so anyone holding the public key computes it::

    openssl pkey -pubin -in gateway-ed25519.pem.pub -outform DER | tail -c 32 | sha256sum

The key id is a hint for choosing a key, never a reason to trust: verification
tries the given key on every signature and fails closed when none verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

PAYLOAD_TYPE = "application/vnd.in-toto+json"

# An envelope larger than this is refused before it is decoded (a bundle's
# attestation holds digests and claims, never the records themselves).
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024


class DsseError(ValueError):
    """An envelope that is malformed or whose signature does not verify (one line)."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of ``payload`` of ``payload_type``."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_id(public_key: Ed25519PublicKey) -> str:
    """sha256 hex of the public key's raw 32 bytes (see the module doc)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo), what openssl reads with -pubin."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key_pem(pem: str | bytes, *, what: str = "public key") -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; a private key PEM gives its public half."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    fix = "pass the gateway's public key (the .pub file `signoff gateway keygen` wrote)"
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            raise DsseError(f"{what}: not a PEM Ed25519 key; {fix}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise DsseError(f"{what}: a {type(key).__name__}, not an Ed25519 key; {fix}")
    return key


def load_private_key_file(path: Path) -> Ed25519PrivateKey:
    """The unencrypted PEM Ed25519 private key at ``path`` (one-line errors)."""
    fix = "make one with `signoff gateway keygen --out PATH`"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DsseError(f"signing key {path}: cannot read it ({error.strerror}); {fix}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise DsseError(f"signing key {path}: not an unencrypted PEM private key; {fix}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise DsseError(f"signing key {path}: a {type(key).__name__}, not an Ed25519 key; {fix}")
    return key


def sign_envelope(
    payload: bytes, private_key: Ed25519PrivateKey, *, payload_type: str = PAYLOAD_TYPE
) -> dict[str, Any]:
    """A DSSE envelope of ``payload`` with one Ed25519 signature over its PAE."""
    signature = private_key.sign(pae(payload_type, payload))
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [
            {
                "keyid": key_id(private_key.public_key()),
                "sig": base64.b64encode(signature).decode("ascii"),
            }
        ],
    }


def envelope_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The envelope as the bundle stores it: sorted keys, two-space indent, newline."""
    return (json.dumps(dict(envelope), indent=2, sort_keys=True) + "\n").encode("utf-8")


def _b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise DsseError(f"envelope: {what} is not a base64 string")
    padded = text + "=" * (-len(text) % 4)
    alphabet = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(padded, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        raise DsseError(f"envelope: {what} is not valid base64") from None


def parse_envelope(data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """The envelope as a dict, its shape checked (not its signature)."""
    if isinstance(data, (bytes, str)):
        if len(data) > MAX_ENVELOPE_BYTES:
            raise DsseError(f"envelope: larger than {MAX_ENVELOPE_BYTES} bytes")
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise DsseError("envelope: not JSON") from None
    else:
        value = dict(data)
    if not isinstance(value, dict):
        raise DsseError("envelope: not a JSON object")
    for field in ("payload", "payloadType", "signatures"):
        if field not in value:
            raise DsseError(f"envelope: no {field!r}")
    if not isinstance(value["payloadType"], str):
        raise DsseError("envelope: payloadType is not a string")
    signatures = value["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise DsseError("envelope: no signatures")
    for signature in signatures:
        if not isinstance(signature, dict) or not isinstance(signature.get("sig"), str):
            raise DsseError("envelope: a signature without 'sig'")
    return value


def verify_envelope(
    envelope: bytes | str | Mapping[str, Any],
    public_key: Ed25519PublicKey,
    *,
    payload_type: str = PAYLOAD_TYPE,
) -> bytes:
    """The payload of ``envelope`` once a signature over its PAE verifies with
    ``public_key``; DsseError (one line) otherwise. The payload type must be
    ``payload_type``: a signature over another type is not an attestation."""
    value = parse_envelope(envelope)
    if value["payloadType"] != payload_type:
        raise DsseError(
            f"envelope: payloadType is {value['payloadType']!r}, expected {payload_type!r}"
        )
    payload = _b64decode(value["payload"], "payload")
    message = pae(value["payloadType"], payload)
    wanted = key_id(public_key)
    for index, signature in enumerate(value["signatures"]):
        raw = _b64decode(signature["sig"], f"signature {index}")
        try:
            public_key.verify(raw, message)
        except InvalidSignature:
            continue
        return payload
    ids = sorted({str(s.get("keyid")) for s in value["signatures"]})
    if wanted not in ids:
        raise DsseError(
            f"signature: no signature by key {wanted[:16]}… (the envelope names "
            f"{', '.join(i[:16] + '…' for i in ids)}); is this the gateway's public key?"
        )
    raise DsseError(f"signature: the signature by key {wanted[:16]}… does not verify")
