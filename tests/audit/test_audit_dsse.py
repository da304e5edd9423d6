"""DSSE envelopes: the PAE byte for byte, sign/verify, and every field tampered."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runner.audit.dsse import (
    PAYLOAD_TYPE,
    DsseError,
    key_id,
    load_private_key_file,
    load_public_key_pem,
    pae,
    public_key_pem,
    sign_envelope,
    verify_envelope,
)

# A fixed key (RFC 8032 test 1's secret) so the vectors below are stable.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
KEY = Ed25519PrivateKey.from_private_bytes(SEED)
PUBLIC_RAW = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def test_pae_is_the_spec_encoding() -> None:
    # The DSSE spec's example: PAE("http://example.com/HelloWorld", "hello world").
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "
    # Lengths are in bytes, not characters.
    assert pae("t\u00e9", "\u00e9".encode()) == b"DSSEv1 3 t\xc3\xa9 2 \xc3\xa9"


def test_key_id_is_sha256_of_the_raw_public_key() -> None:
    assert (
        KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        == PUBLIC_RAW
    )
    assert key_id(KEY.public_key()) == hashlib.sha256(PUBLIC_RAW).hexdigest()


def test_sign_is_deterministic_and_verifies() -> None:
    payload = b'{"_type":"https://in-toto.io/Statement/v1"}'
    envelope = sign_envelope(payload, KEY)
    assert envelope == sign_envelope(payload, KEY)  # Ed25519 signatures are deterministic
    assert set(envelope) == {"payload", "payloadType", "signatures"}
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert base64.b64decode(envelope["payload"]) == payload
    (signature,) = envelope["signatures"]
    assert signature["keyid"] == hashlib.sha256(PUBLIC_RAW).hexdigest()
    # The signature is over the PAE, checkable with nothing but the public key.
    KEY.public_key().verify(base64.b64decode(signature["sig"]), pae(PAYLOAD_TYPE, payload))
    assert verify_envelope(envelope, KEY.public_key()) == payload
    assert verify_envelope(json.dumps(envelope), KEY.public_key()) == payload


def _flip_b64(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("field", "change", "message"),
    [
        ("payload", lambda e: {**e, "payload": _flip_b64(e["payload"])}, "does not verify"),
        ("payloadType", lambda e: {**e, "payloadType": "application/json"}, "payloadType"),
        (
            "sig",
            lambda e: {
                **e,
                "signatures": [{**e["signatures"][0], "sig": _flip_b64(e["signatures"][0]["sig"])}],
            },
            "does not verify",
        ),
        (
            "keyid",
            lambda e: {**e, "signatures": [{**e["signatures"][0], "keyid": "ab" * 32}]},
            None,
        ),
        ("signatures", lambda e: {**e, "signatures": []}, "no signatures"),
        ("payload-b64", lambda e: {**e, "payload": "not base64!"}, "base64"),
        ("missing", lambda e: {k: v for k, v in e.items() if k != "payload"}, "no 'payload'"),
    ],
)
def test_each_field_tampered_is_refused(field: str, change: object, message: str | None) -> None:
    envelope = sign_envelope(b"payload bytes", KEY)
    tampered = change(envelope)  # type: ignore[operator]
    if field == "keyid":
        # The key id is a hint: a valid signature under another label still verifies
        # with the right key, and the payload is exactly what was signed.
        assert verify_envelope(tampered, KEY.public_key()) == b"payload bytes"
        return
    with pytest.raises(DsseError, match=message):
        verify_envelope(tampered, KEY.public_key())


def test_the_same_payload_type_changed_in_the_pae_fails() -> None:
    """A signature made over another payload type does not verify as in-toto, even
    when the envelope claims in-toto: the type is inside what is signed."""
    payload = b"{}"
    other = sign_envelope(payload, KEY, payload_type="application/json")
    forged = {**other, "payloadType": PAYLOAD_TYPE}
    with pytest.raises(DsseError, match="does not verify"):
        verify_envelope(forged, KEY.public_key())


def test_another_key_is_named_in_the_refusal() -> None:
    envelope = sign_envelope(b"x", Ed25519PrivateKey.generate())
    with pytest.raises(DsseError, match="no signature by key") as caught:
        verify_envelope(envelope, KEY.public_key())
    assert key_id(KEY.public_key())[:16] in str(caught.value)


def test_url_safe_base64_is_accepted() -> None:
    payload = bytes(range(250, 256)) * 3  # bytes whose base64 has + and /
    envelope = sign_envelope(payload, KEY)
    assert "+" in envelope["payload"] or "/" in envelope["payload"]
    urlsafe = {
        **envelope,
        "payload": envelope["payload"].replace("+", "-").replace("/", "_").rstrip("="),
    }
    assert verify_envelope(urlsafe, KEY.public_key()) == payload


def test_key_files(tmp_path: Path) -> None:
    private = tmp_path / "gw.pem"
    private.write_bytes(
        KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    loaded = load_private_key_file(private)
    assert key_id(loaded.public_key()) == key_id(KEY.public_key())
    pem = public_key_pem(loaded)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id(load_public_key_pem(pem)) == key_id(KEY.public_key())
    with pytest.raises(DsseError, match="cannot read it"):
        load_private_key_file(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(DsseError, match="not an unencrypted PEM"):
        load_private_key_file(tmp_path / "junk.pem")
    with pytest.raises(DsseError, match="not a PEM Ed25519 key"):
        load_public_key_pem("junk")
