"""The gateway keeps each closed session's bundle itself.

A runner that never uploads its evidence (it crashed, or a pull request changed
what it runs) still leaves it: when a session is closed (``DELETE
/v1/sessions/{id}``, which every ``signoff apply`` sends at its end), the gateway
builds the session's bundle from its own audit chain, attested and signed with its
own key, and stores it under ``gateway.archive`` (``file://dir`` or
``s3://bucket/prefix``, with the same Object Lock, checksum and no-overwrite rules
as the runner's uploads). A store that refuses spools the bundle beside the
gateway's state; the failure is logged and recorded, never silent.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runner.audit.attestation import gateway_attestation
from runner.audit.bundle import build_bundle
from runner.audit.report import render_report
from runner.audit.storage import StorageConfig, parse_destination, s3_client, upload_bundle
from runner.errors import SignoffError
from runner.gateway.model import Session, StateStore

_log = logging.getLogger("signoff.gateway.archive")


def archive_key(session: Session, when: datetime | None = None) -> str:
    """Dated by when the session ended (closed, or expired): every node computes the
    same key for it, so a second node's archive finds the first one's."""
    moment = (when or session.revoked_at or session.expires_at or datetime.now(UTC)).astimezone(UTC)
    return f"gateway/{session.database}/{moment:%Y/%m/%d}/{session.id}.tar.gz"


def archive_session(
    store: StateStore,
    session: Session,
    *,
    destination: str,
    signing_key: Ed25519PrivateKey | None,
    spool_dir: Path,
    endpoint_url: str | None = None,
) -> str:
    """Build, sign and store ``session``'s bundle; its URI. Raises SignoffError (one
    line) when it could not be stored (it is then spooled in ``spool_dir``)."""
    entries = store.entries(session_id=session.id)
    envelope = gateway_attestation(store, session.id, signing_key) if signing_key else None
    bundle = build_bundle(
        entries=entries,
        envelope=envelope,
        unsigned_reason=None if envelope else "the gateway has no signing key",
        run={"archived_by": "gateway", "session_id": session.id},
        render_report=render_report,
    )
    uploaded = upload_bundle(
        bundle.to_bytes(),
        key=archive_key(session, session.revoked_at or datetime.now(UTC)),
        destination=parse_destination(destination),
        spool_dir=spool_dir,
        config=StorageConfig(endpoint_url=endpoint_url),
    )
    return uploaded.uri


def archived(destination: str, session: Session, endpoint_url: str | None = None) -> bool:
    """Whether ``session``'s bundle is already in the archive (by any gateway node)."""
    target = parse_destination(destination)
    keys = [archive_key(session, day) for day in _days_of(session)]
    if target.scheme == "file":
        return any((Path(target.location) / key).exists() for key in keys)
    client = s3_client(StorageConfig(endpoint_url=endpoint_url))
    for key in keys:
        try:
            client.head_object(
                Bucket=target.location, Key=f"{target.prefix}/{key}" if target.prefix else key
            )
        except ClientError:  # 404, or a refusal: not known to be there, so archive it
            continue
        return True
    return False


def _days_of(session: Session) -> list[datetime]:
    """The days its key may carry: when it was closed, or when it expired."""
    days = [session.expires_at]
    if session.revoked_at is not None:
        days.insert(0, session.revoked_at)
    return days


def archive_quietly(
    store: StateStore,
    session: Session,
    *,
    destination: str,
    signing_key: Ed25519PrivateKey | None,
    spool_dir: Path,
    endpoint_url: str | None = None,
) -> str | None:
    """``archive_session``, its failure logged (one line) instead of raised: closing a
    session must not fail because the archive is down; the bundle is spooled."""
    try:
        uri = archive_session(
            store,
            session,
            destination=destination,
            signing_key=signing_key,
            spool_dir=spool_dir,
            endpoint_url=endpoint_url,
        )
    except (SignoffError, ValueError) as error:
        _log.error("session %s not archived: %s", session.id, error)
        return None
    _log.info("session %s archived at %s", session.id, uri)
    return uri
