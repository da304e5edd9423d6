"""Bundles to S3 through real boto3 against moto's S3 server on loopback (a bucket
with Object Lock and versioning): upload and read back, retention, encryption, no
overwrite, a bucket without Object Lock refused, S3 down -> spooled -> flushed with
none lost; and the file:// destination."""

from __future__ import annotations

import base64
import hashlib
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from audit_session import synthetic_bundle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from moto.server import ThreadedMotoServer

from runner.audit.dsse import public_key_pem
from runner.audit.offline import verify_bundle
from runner.audit.storage import (
    BundleExists,
    SpooledError,
    StorageConfig,
    StorageError,
    bundle_key,
    check_destination,
    flush_spool,
    parse_destination,
    spooled,
    upload_bundle,
)

KEY = Ed25519PrivateKey.generate()
WHEN = datetime(2026, 12, 4, 1, 2, 3, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3:
    """moto's server on a loopback port that can be stopped and started again (its
    state lives in this process, so objects survive a restart)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    # boto3's standard chain reads these: no real credentials anywhere near the tests.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = S3()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _bucket(s3: S3, *, locked: bool = True) -> str:
    name = f"audit-{uuid.uuid4().hex[:12]}"
    client = s3.client()
    if locked:
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def _config(s3: S3, **overrides: Any) -> StorageConfig:
    values: dict[str, Any] = {
        "endpoint_url": s3.url,
        "region": "us-east-1",
        "backoff_seconds": 0.01,
        "connect_timeout": 1.0,
        "read_timeout": 5.0,
    }
    values.update(overrides)
    return StorageConfig(**values)


def _retention(client: Any, bucket: str, key: str) -> tuple[str, datetime]:
    """(mode, retain-until) of an object. GetObjectRetention first; moto 5.2 does not
    implement it (it answers 500), so then the same two fields from HeadObject, which
    S3 and moto both return for a locked object."""
    from botocore.exceptions import ClientError

    try:
        retention = client.get_object_retention(Bucket=bucket, Key=key)["Retention"]
        return retention["Mode"], retention["RetainUntilDate"]
    except ClientError as error:
        if error.response["ResponseMetadata"]["HTTPStatusCode"] not in (500, 501):
            raise
    head = client.head_object(Bucket=bucket, Key=key)
    return head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]


def _key(run_id: str = "1234", attempt: int = 1) -> str:
    return bundle_key(
        repository="acme/ehr-api",
        database="ehr",
        run_id=run_id,
        attempt=attempt,
        plan_hash="c01986683db2" + "0" * 52,
        when=WHEN,
    )


def test_key_layout_and_bad_parts() -> None:
    assert _key() == "acme/ehr-api/ehr/2026/12/04/1234-1-c01986683db2.tar.gz"
    assert parse_destination("s3://b/audit/prod/").full_key("k") == "audit/prod/k"
    assert parse_destination("s3://b").full_key("k") == "k"
    assert parse_destination("file:///tmp/x").location == "/tmp/x"
    with pytest.raises(StorageError, match="repository"):
        bundle_key(repository="acme/../x", database="ehr", run_id="1", attempt=1, plan_hash=None)
    with pytest.raises(StorageError, match="use s3://bucket/prefix or file://dir"):
        parse_destination("gs://bucket")
    with pytest.raises(StorageError, match="kms_key_id"):
        StorageConfig(sse="aws:kms")


def test_upload_read_back_with_retention_checksum_and_encryption(s3: S3, tmp_path: Path) -> None:
    bucket = _bucket(s3)
    data = synthetic_bundle(KEY)
    before = datetime.now(UTC)
    uploaded = upload_bundle(
        data,
        key=_key(),
        destination=f"s3://{bucket}/audit",
        spool_dir=tmp_path / "spool",
        config=_config(s3),
    )
    full_key = f"audit/{_key()}"
    assert uploaded.uri == f"s3://{bucket}/{full_key}"
    assert uploaded.version_id and uploaded.lock_mode == "COMPLIANCE"
    client = s3.client()
    got = client.get_object(Bucket=bucket, Key=full_key, ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert got["ServerSideEncryption"] == "AES256"
    mode, until = _retention(client, bucket, full_key)
    assert mode == "COMPLIANCE"
    assert before + timedelta(days=2189) < until < datetime.now(UTC) + timedelta(days=2191)
    # The lock holds: the stored version cannot be deleted.
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=full_key, VersionId=uploaded.version_id)
    assert not list(spooled(tmp_path / "spool"))
    # And it verifies straight from S3.
    report = verify_bundle(uploaded.uri, public_key_pem(KEY), s3_endpoint_url=s3.url)
    assert report.ok, report.lines()


def test_governance_days_and_kms_are_configurable(s3: S3, tmp_path: Path) -> None:
    bucket = _bucket(s3)
    config = _config(
        s3, lock_mode="GOVERNANCE", retention_days=30, sse="aws:kms", kms_key_id="alias/audit"
    )
    upload_bundle(
        synthetic_bundle(KEY),
        key=_key(),
        destination=f"s3://{bucket}",
        spool_dir=tmp_path,
        config=config,
    )
    client = s3.client()
    mode, until = _retention(client, bucket, _key())
    assert mode == "GOVERNANCE"
    assert datetime.now(UTC) + timedelta(days=29) < until < datetime.now(UTC) + timedelta(days=31)
    head = client.head_object(Bucket=bucket, Key=_key())
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith("alias/audit")


def test_an_existing_key_is_never_overwritten(s3: S3, tmp_path: Path) -> None:
    bucket = _bucket(s3)
    first, second = synthetic_bundle(KEY, note="one"), synthetic_bundle(KEY, note="two")
    assert first != second
    spool = tmp_path / "spool"
    upload = dict(key=_key(), destination=f"s3://{bucket}", spool_dir=spool, config=_config(s3))
    upload_bundle(first, **upload)  # type: ignore[arg-type]
    # The same bytes again (a retry whose answer was lost): already there, fine.
    again = upload_bundle(first, **upload)  # type: ignore[arg-type]
    assert again.already_there
    # Other bytes under the same key: refused, kept in the spool, the object untouched.
    with pytest.raises(SpooledError, match="never overwritten") as caught:
        upload_bundle(second, **upload)  # type: ignore[arg-type]
    assert caught.value.path.read_bytes() == second
    client = s3.client()
    assert client.get_object(Bucket=bucket, Key=_key())["Body"].read() == first
    versions = client.list_object_versions(Bucket=bucket, Prefix=_key())["Versions"]
    assert len(versions) == 1


def test_a_bucket_without_object_lock_is_refused_when_required(s3: S3, tmp_path: Path) -> None:
    bucket = _bucket(s3, locked=False)
    destination = parse_destination(f"s3://{bucket}/audit")
    with pytest.raises(StorageError) as caught:
        check_destination(destination, _config(s3))
    message = str(caught.value)
    assert "\n" not in message
    assert f"s3://{bucket}: the bucket has no Object Lock" in message
    assert "require_object_lock = false" in message
    with pytest.raises(SpooledError, match="has no Object Lock"):
        upload_bundle(
            synthetic_bundle(KEY),
            key=_key(),
            destination=destination,
            spool_dir=tmp_path / "spool",
            config=_config(s3),
        )
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    # Not required: stored, without a retention.
    relaxed = _config(s3, require_object_lock=False)
    check_destination(destination, relaxed)
    uploaded = upload_bundle(
        synthetic_bundle(KEY),
        key=_key(),
        destination=destination,
        spool_dir=tmp_path / "spool2",
        config=relaxed,
    )
    assert uploaded.lock_mode is None and uploaded.retain_until is None
    with pytest.raises(StorageError, match="no such bucket"):
        check_destination(parse_destination("s3://no-such-bucket-here"), _config(s3))


def test_s3_down_spools_every_bundle_and_flush_loses_none(s3: S3, tmp_path: Path) -> None:
    bucket = _bucket(s3)
    spool = tmp_path / "spool"
    destination = f"s3://{bucket}/audit"
    bundles = {f"run{n}": synthetic_bundle(KEY, note=f"n{n}") for n in range(5)}
    delays: list[float] = []
    s3.stop()
    spooled_files = []
    for run_id, data in bundles.items():
        with pytest.raises(SpooledError) as caught:
            upload_bundle(
                data,
                key=_key(run_id),
                destination=destination,
                spool_dir=spool,
                config=_config(s3, attempts=3),
                sleep=delays.append,
            )
        assert str(caught.value).count("\n") == 0
        assert f"spooled to {caught.value.path}" in str(caught.value)
        assert "signoff audit flush --spool" in str(caught.value)
        spooled_files.append(caught.value.path)
    assert delays == [0.01, 0.02] * len(bundles)  # retried with backoff before spooling
    assert sorted(p for _, p in spooled(spool)) == sorted(spooled_files)
    # Still down: flush keeps everything spooled.
    still = flush_spool(spool, destination, _config(s3, attempts=1))
    assert len(still.failed) == len(bundles) and not still.uploaded
    s3.start()
    flushed = flush_spool(spool, destination, _config(s3))
    assert flushed.ok and len(flushed.uploaded) == len(bundles)
    assert not list(spooled(spool))
    client = s3.client()
    listed = client.list_objects_v2(Bucket=bucket, Prefix="audit/")["Contents"]
    assert len(listed) == len(bundles)  # in == out
    for run_id, data in bundles.items():
        body = client.get_object(Bucket=bucket, Key=f"audit/{_key(run_id)}")["Body"].read()
        assert body == data
        assert _retention(client, bucket, f"audit/{_key(run_id)}")[0] == "COMPLIANCE"


def test_a_retry_after_s3_comes_back_uploads_without_spooling(s3: S3, tmp_path: Path) -> None:
    bucket = _bucket(s3)
    s3.stop()
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 2:
            s3.start()

    uploaded = upload_bundle(
        synthetic_bundle(KEY),
        key=_key(),
        destination=f"s3://{bucket}",
        spool_dir=tmp_path / "spool",
        config=_config(s3, attempts=4),
        sleep=sleep,
    )
    assert delays == [0.01, 0.02]
    assert uploaded.version_id
    assert not list(spooled(tmp_path / "spool"))


def test_file_destination(tmp_path: Path) -> None:
    out = tmp_path / "audit"
    first, second = synthetic_bundle(KEY, note="a"), synthetic_bundle(KEY, note="b")
    uploaded = upload_bundle(
        first, key=_key(), destination=f"file://{out}", spool_dir=tmp_path / "spool"
    )
    assert uploaded.uri == f"file://{out / _key()}"
    assert (out / _key()).read_bytes() == first
    assert upload_bundle(
        first, key=_key(), destination=str(out), spool_dir=tmp_path / "spool"
    ).already_there
    with pytest.raises(SpooledError, match="never overwritten"):
        upload_bundle(second, key=_key(), destination=str(out), spool_dir=tmp_path / "spool")
    assert (out / _key()).read_bytes() == first
    # The spooled second bundle cannot be flushed over the first either: it stays.
    report = flush_spool(tmp_path / "spool", str(out))
    assert report.failed and "never overwritten" in report.failed[0][1]
    assert len(list(spooled(tmp_path / "spool"))) == 1
    assert issubclass(BundleExists, StorageError)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``signoff audit ...`` as a process (the group, until runner/cli.py registers it)."""
    code = "from runner.cli_audit import audit; audit(prog_name='signoff audit')"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )


def test_cli_flush_uploads_the_spool(s3: S3, tmp_path: Path) -> None:
    bucket = _bucket(s3)
    locked_off = _bucket(s3, locked=False)
    spool = tmp_path / "spool"
    s3.stop()
    for n in range(3):
        with pytest.raises(SpooledError):
            upload_bundle(
                synthetic_bundle(KEY, note=f"c{n}"),
                key=_key(f"cli{n}"),
                destination=f"s3://{bucket}/audit",
                spool_dir=spool,
                config=_config(s3, attempts=1),
            )
    s3.start()
    endpoint = ["--s3-endpoint-url", s3.url]
    # A bucket without Object Lock: one line, exit 2, nothing leaves the spool.
    done = _cli("flush", "--spool", str(spool), "--to", f"s3://{locked_off}", *endpoint)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "has no Object Lock" in done.stderr
    assert len(list(spooled(spool))) == 3
    done = _cli("flush", "--spool", str(spool), "--to", f"s3://{bucket}/audit", *endpoint)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("uploaded s3://") == 3
    assert "3 of 3 spooled bundle(s) uploaded" in done.stdout
    assert not list(spooled(spool))
    assert s3.client().list_objects_v2(Bucket=bucket, Prefix="audit/")["KeyCount"] == 3
    done = _cli("flush", "--spool", str(spool), "--to", f"s3://{bucket}/audit", *endpoint)
    assert done.returncode == 0 and "nothing spooled" in done.stdout


def test_a_refusal_is_spooled_at_once_without_retries(s3: S3, tmp_path: Path) -> None:
    delays: list[float] = []
    with pytest.raises(SpooledError, match="no such bucket") as caught:
        upload_bundle(
            synthetic_bundle(KEY),
            key=_key(),
            destination="s3://no-such-audit-bucket/audit",
            spool_dir=tmp_path / "spool",
            config=_config(s3),
            sleep=delays.append,
        )
    assert delays == []  # trying again cannot create the bucket
    assert caught.value.path.is_file()
