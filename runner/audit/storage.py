"""Where audit bundles go: S3 (Object Lock, checksums, encryption) or a directory,
with a local spool so that no bundle is ever lost.

Destinations: ``s3://bucket/prefix`` (boto3's standard credential chain; an
``endpoint_url`` for S3-compatible stores) and ``file://dir`` (or a plain path).
A bundle's key under the prefix::

    {prefix}/{repository}/{database}/{YYYY}/{MM}/{DD}/{run_id}-{attempt}-{plan12}.tar.gz

S3 puts carry ``ChecksumAlgorithm=SHA256`` (S3 checks the bytes it stored),
server-side encryption (``AES256``, or ``aws:kms`` with a key id) and, when the
bucket has Object Lock, a retention (default COMPLIANCE for 2190 days: six years).
``require_object_lock`` refuses, in one line, a bucket without it. A key that
exists is never overwritten: puts are conditional (``IfNoneMatch="*"``, which S3
has honoured since 2024-08 and moto's server implements, so there is no
head-then-put race to fall back to); a key that exists already with the same
sha256 is the same bundle (a retried put whose first answer was lost) and counts
as uploaded, anything else under it is refused.

An upload that fails is retried with backoff; if it still fails, the bundle is
written to the spool directory (``{spool}/{key under the prefix}``) and the caller
gets ``SpooledError`` naming that file. ``flush_spool`` uploads the spool later
(``signoff audit flush``) and removes each file only once its upload is confirmed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from runner.errors import SignoffError

DEFAULT_RETENTION_DAYS = 2190
LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
SSE_MODES = ("AES256", "aws:kms")
_SAFE_PART = re.compile(r"[A-Za-z0-9._-]+")


class StorageError(SignoffError):
    """A destination that cannot be used as configured (one line naming the fix)."""


class BundleExists(StorageError):
    """The key holds another object already: a bundle is never overwritten."""


class SpooledError(SignoffError):
    """The upload failed after retries; the bundle is safe in ``path`` for a later flush."""

    exit_code = 1

    def __init__(self, path: Path, reason: str, spool_dir: Path) -> None:
        super().__init__(
            f"audit bundle not uploaded ({reason}); spooled to {path}; upload it later "
            f"with `signoff audit flush --spool {spool_dir} --to DESTINATION`"
        )
        self.path = path
        self.reason = reason
        self.spool_dir = spool_dir


@dataclass(frozen=True)
class StorageConfig:
    """How bundles are stored (the ``[audit]`` settings of the CI job)."""

    sse: str = "AES256"  # or "aws:kms"
    kms_key_id: str | None = None
    lock_mode: str = "COMPLIANCE"
    retention_days: int = DEFAULT_RETENTION_DAYS
    require_object_lock: bool = True
    endpoint_url: str | None = None
    region: str | None = None
    attempts: int = 4  # tries before spooling
    backoff_seconds: float = 0.5  # doubled after each failed try
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.sse not in SSE_MODES:
            raise StorageError(f"audit sse {self.sse!r}: use one of {', '.join(SSE_MODES)}")
        if self.sse == "aws:kms" and not self.kms_key_id:
            raise StorageError("audit sse aws:kms needs kms_key_id (a KMS key id or ARN)")
        if self.lock_mode not in LOCK_MODES:
            raise StorageError(
                f"audit lock_mode {self.lock_mode!r}: use one of {', '.join(LOCK_MODES)}"
            )
        if self.retention_days < 1:
            raise StorageError("audit retention_days must be at least 1")
        if self.attempts < 1:
            raise StorageError("audit attempts must be at least 1")


@dataclass(frozen=True)
class Destination:
    scheme: str  # "s3" or "file"
    location: str  # bucket, or directory
    prefix: str = ""  # S3 key prefix, no leading or trailing slash

    def __str__(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.location}/{self.prefix}".rstrip("/")
        return f"file://{self.location}"

    def uri(self, key: str) -> str:
        if self.scheme == "s3":
            return f"s3://{self.location}/{self.full_key(key)}"
        return f"file://{(Path(self.location) / key).absolute()}"

    def full_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key


def parse_destination(text: str) -> Destination:
    """``s3://bucket/prefix``, ``file://dir`` or a directory path."""
    if text.startswith("s3://"):
        parsed = urlparse(text)
        if not parsed.netloc:
            raise StorageError(f"audit destination {text!r}: no bucket; use s3://bucket/prefix")
        return Destination("s3", parsed.netloc, parsed.path.strip("/"))
    if text.startswith("file://"):
        path = text[len("file://") :]
        if not path:
            raise StorageError(f"audit destination {text!r}: no directory; use file:///path")
        return Destination("file", path)
    if "://" in text:
        raise StorageError(f"audit destination {text!r}: use s3://bucket/prefix or file://dir")
    return Destination("file", text)


def _part(value: str, what: str) -> str:
    if not _SAFE_PART.fullmatch(value) or value in (".", ".."):
        raise StorageError(
            f"audit key: {what} {value!r} may hold only letters, digits, '.', '_' and '-'"
        )
    return value


def bundle_key(
    *,
    repository: str,
    database: str,
    run_id: str,
    attempt: int | str,
    plan_hash: str | None,
    when: datetime | None = None,
) -> str:
    """The bundle's key under the destination's prefix (see the module doc).
    ``repository`` is owner/name (GitLab: group/subgroup/project): one key level each."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    repo_parts = [_part(p, "repository") for p in repository.split("/")]
    plan12 = plan_hash[:12] if plan_hash else "noplan"
    name = (
        f"{_part(str(run_id), 'run id')}-{_part(str(attempt), 'attempt')}-{_part(plan12, 'plan')}"
    )
    day = [f"{moment:%Y}", f"{moment:%m}", f"{moment:%d}"]
    return "/".join([*repo_parts, _part(database, "database"), *day, f"{name}.tar.gz"])


@dataclass(frozen=True)
class Uploaded:
    uri: str
    sha256: str
    version_id: str | None = None
    retain_until: datetime | None = None
    lock_mode: str | None = None
    already_there: bool = False  # the same bytes were under the key already


# -- S3 -----------------------------------------------------------------------------------


def s3_client(config: StorageConfig) -> Any:
    """A boto3 S3 client: the standard credential chain, our timeouts, no retries of its
    own (``upload_bundle`` retries, then spools)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=config.endpoint_url,
        region_name=config.region,
        config=Config(
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def object_lock_enabled(client: Any, bucket: str) -> bool:
    """Whether ``bucket`` has Object Lock; StorageError for an unknown or unreadable bucket."""
    from botocore.exceptions import ClientError

    try:
        answer = client.get_object_lock_configuration(Bucket=bucket)
    except ClientError as error:
        code = _error_code(error)
        if code == "ObjectLockConfigurationNotFoundError":
            return False
        if code in ("NoSuchBucket", "404"):
            raise StorageError(
                f"s3://{bucket}: no such bucket; create it or fix the name"
            ) from None
        if code in ("AccessDenied", "403"):
            raise StorageError(
                f"s3://{bucket}: access denied reading its Object Lock configuration; "
                "grant s3:GetBucketObjectLockConfiguration"
            ) from None
        raise
    config = answer.get("ObjectLockConfiguration", {})
    return bool(config.get("ObjectLockEnabled") == "Enabled")


def _lock_refusal(bucket: str) -> StorageError:
    return StorageError(
        f"s3://{bucket}: the bucket has no Object Lock and the audit config requires it; "
        "use a bucket created with Object Lock (and versioning) or set require_object_lock = false"
    )


def check_destination(destination: Destination, config: StorageConfig) -> None:
    """Refuse, before anything runs, a destination the upload would refuse."""
    if destination.scheme == "s3":
        if config.require_object_lock and not object_lock_enabled(
            s3_client(config), destination.location
        ):
            raise _lock_refusal(destination.location)
    else:
        directory = Path(destination.location)
        if directory.exists() and not directory.is_dir():
            raise StorageError(f"audit destination {directory}: not a directory")


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _put_s3(
    client: Any, destination: Destination, key: str, data: bytes, config: StorageConfig
) -> Uploaded:
    from botocore.exceptions import ClientError

    bucket, full_key = destination.location, destination.full_key(key)
    locked = object_lock_enabled(client, bucket)
    if config.require_object_lock and not locked:
        raise _lock_refusal(bucket)
    args: dict[str, Any] = {
        "Bucket": bucket,
        "Key": full_key,
        "Body": data,
        "ContentType": "application/gzip",
        "ChecksumAlgorithm": "SHA256",
        "ChecksumSHA256": _b64_sha256(data),
        "IfNoneMatch": "*",
        "ServerSideEncryption": config.sse,
    }
    if config.sse == "aws:kms":
        args["SSEKMSKeyId"] = config.kms_key_id
    retain_until: datetime | None = None
    if locked:
        retain_until = datetime.now(UTC) + timedelta(days=config.retention_days)
        args["ObjectLockMode"] = config.lock_mode
        args["ObjectLockRetainUntilDate"] = retain_until
    digest = hashlib.sha256(data).hexdigest()
    try:
        answer = client.put_object(**args)
    except ClientError as error:
        if _error_code(error) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            return _existing(client, destination, key, data)
        raise
    return Uploaded(
        uri=destination.uri(key),
        sha256=digest,
        version_id=answer.get("VersionId"),
        retain_until=retain_until,
        lock_mode=config.lock_mode if locked else None,
    )


def _existing(client: Any, destination: Destination, key: str, data: bytes) -> Uploaded:
    """The key exists: the same bundle (a retry whose first answer was lost) or another."""
    head = client.head_object(
        Bucket=destination.location, Key=destination.full_key(key), ChecksumMode="ENABLED"
    )
    if head.get("ChecksumSHA256") == _b64_sha256(data):
        return Uploaded(
            uri=destination.uri(key),
            sha256=hashlib.sha256(data).hexdigest(),
            version_id=head.get("VersionId"),
            retain_until=head.get("ObjectLockRetainUntilDate"),
            lock_mode=head.get("ObjectLockMode"),
            already_there=True,
        )
    raise BundleExists(
        f"{destination.uri(key)} exists and holds other bytes; a bundle is never overwritten"
    )


def read_object(uri: str, config: StorageConfig | None = None) -> bytes:
    """The bytes at ``s3://bucket/key`` (checksum verified by boto3) or a file path."""
    if not uri.startswith("s3://"):
        path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
        try:
            return path.read_bytes()
        except OSError as error:
            raise StorageError(f"{path}: cannot read it ({error.strerror})") from None
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(uri)
    key = parsed.path.lstrip("/")
    client = s3_client(config or StorageConfig(require_object_lock=False))
    try:
        answer = client.get_object(Bucket=parsed.netloc, Key=key, ChecksumMode="ENABLED")
        body: bytes = answer["Body"].read()
    except ClientError as error:
        raise StorageError(f"{uri}: cannot read it ({_error_code(error) or error})") from None
    except BotoCoreError as error:
        raise StorageError(f"{uri}: cannot read it ({error})") from None
    return body


# -- files ----------------------------------------------------------------------------------


def _put_file(destination: Destination, key: str, data: bytes) -> Uploaded:
    target = Path(destination.location) / key
    digest = hashlib.sha256(data).hexdigest()
    if target.exists():
        if hashlib.sha256(target.read_bytes()).hexdigest() == digest:
            return Uploaded(destination.uri(key), digest, already_there=True)
        raise BundleExists(f"{target} exists and holds other bytes; a bundle is never overwritten")
    _write_new(target, data)
    return Uploaded(destination.uri(key), digest)


def _write_new(target: Path, data: bytes) -> None:
    """Write ``target`` whole or not at all, never replacing a file: a temporary file,
    fsynced, then hard-linked into place (link fails if the name exists)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, target)
        except FileExistsError:
            raise BundleExists(f"{target} exists; a bundle is never overwritten") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


# -- upload, retry, spool -----------------------------------------------------------------


@dataclass
class Uploader:
    """Puts bundles to one destination with retries; the spool catches what fails."""

    destination: Destination
    config: StorageConfig = field(default_factory=StorageConfig)
    sleep: Callable[[float], None] = time.sleep
    _client: Any = field(default=None, init=False, repr=False)

    def put_once(self, key: str, data: bytes) -> Uploaded:
        if self.destination.scheme == "file":
            return _put_file(self.destination, key, data)
        if self._client is None:
            self._client = s3_client(self.config)
        return _put_s3(self._client, self.destination, key, data, self.config)

    def put(self, key: str, data: bytes) -> Uploaded:
        """Upload with backoff; the last error re-raised. Refusals (no Object Lock, the
        key taken by other bytes) are not retried: trying again cannot change them."""
        delay = self.config.backoff_seconds
        for attempt in range(1, self.config.attempts + 1):
            try:
                return self.put_once(key, data)
            except Exception as error:
                if attempt == self.config.attempts or not _transient(error):
                    raise
                self.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")


_TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeTooSkewed",
        "OperationAborted",
    }
)


def _transient(error: Exception) -> bool:
    """Whether trying again may help: the network, a 5xx, throttling. A refusal
    (no Object Lock, a taken key, access denied, no such bucket) is not."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(error, StorageError):
        return False
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _error_code(error) in _TRANSIENT_CODES or int(status or 0) >= 500
    return isinstance(error, BotoCoreError | OSError)


def _reason(error: BaseException) -> str:
    code = _error_code(error) if isinstance(error, Exception) else ""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{code}: {text}" if code and code not in text else text


def spool_path(spool_dir: Path, key: str) -> Path:
    return Path(spool_dir) / key


def upload_bundle(
    data: bytes,
    *,
    key: str,
    destination: Destination | str,
    spool_dir: Path,
    config: StorageConfig | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Uploaded:
    """Upload a bundle's bytes under ``key`` (``bundle_key``), retrying with backoff.

    Whatever fails after the retries (S3 down, a refusal), the bundle is written to
    ``spool_dir`` first and ``SpooledError`` names that file: it is never dropped.
    """
    target = parse_destination(destination) if isinstance(destination, str) else destination
    uploader = Uploader(target, config or StorageConfig(), sleep)
    try:
        return uploader.put(key, data)
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt | SystemExit):
            _spool(spool_dir, key, data)
            raise
        path = _spool(spool_dir, key, data)
        raise SpooledError(path, _reason(error), Path(spool_dir)) from error


def _spool(spool_dir: Path, key: str, data: bytes) -> Path:
    path = spool_path(spool_dir, key)
    if path.exists() and path.read_bytes() == data:
        return path
    try:
        _write_new(path, data)
    except BundleExists:
        # Another bundle spooled under the same key (a rerun of the same attempt):
        # keep both; the later one gets a suffix.
        for n in range(1, 1000):
            other = path.with_name(f"{path.name.removesuffix('.tar.gz')}.{n}.tar.gz")
            if not other.exists():
                _write_new(other, data)
                return other
        raise
    return path


def spooled(spool_dir: Path) -> Iterator[tuple[str, Path]]:
    """(key, file) of every bundle in the spool, in key order."""
    root = Path(spool_dir)
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*.tar.gz")):
        if path.is_file() and not path.name.startswith("."):
            yield path.relative_to(root).as_posix(), path


@dataclass(frozen=True)
class FlushReport:
    uploaded: tuple[Uploaded, ...]
    failed: tuple[tuple[Path, str], ...]  # (spooled file, why)

    @property
    def ok(self) -> bool:
        return not self.failed


def flush_spool(
    spool_dir: Path,
    destination: Destination | str,
    config: StorageConfig | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> FlushReport:
    """Upload every spooled bundle to ``destination`` (its key is its path in the spool);
    a file is removed only once its upload is confirmed; failures stay spooled."""
    target = parse_destination(destination) if isinstance(destination, str) else destination
    uploader = Uploader(target, config or StorageConfig(), sleep)
    uploaded: list[Uploaded] = []
    failed: list[tuple[Path, str]] = []
    for key, path in spooled(spool_dir):
        data = path.read_bytes()
        upload_key = re.sub(r"\.\d+\.tar\.gz$", ".tar.gz", key)
        try:
            result = uploader.put(upload_key, data)
        except BundleExists as error:
            if upload_key != key:  # a second bundle of one attempt: keep its suffix
                try:
                    result = uploader.put(key, data)
                except Exception as again:
                    failed.append((path, _reason(again)))
                    continue
            else:
                failed.append((path, _reason(error)))
                continue
        except Exception as error:
            failed.append((path, _reason(error)))
            continue
        uploaded.append(result)
        path.unlink()
    return FlushReport(tuple(uploaded), tuple(failed))
