"""The evidence a CI job leaves: its session's audit bundle, written locally and
stored (S3 with Object Lock, or a directory), whatever the job's outcome was —
a failed, refused or timed-out run is evidence too.

Everything in the bundle that matters comes from the gateway: the chain entries
(``GET /v1/sessions/{id}/audit``) and the signed attestation over them (``GET
.../attestation``); the runner adds only the plan it ran and what it says about
its own run (kept apart in the manifest, as unverified). A gateway without a
signing key gives an unsigned bundle that says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.audit.bundle import build_bundle, write_bundle
from runner.audit.report import render_report
from runner.audit.storage import (
    Destination,
    StorageConfig,
    bundle_key,
    check_destination,
    parse_destination,
    upload_bundle,
)
from runner.gatewayclient import GatewayClient, GatewayError, GatewaySession
from runner.identity import CiContext
from runner.plan.model import Plan


@dataclass(frozen=True)
class EvidenceOptions:
    bundle_dir: Path = Path("signoff-audit")
    destination: str | None = None  # s3://bucket/prefix or file://dir
    storage: StorageConfig = field(default_factory=StorageConfig)

    def target(self) -> Destination | None:
        return parse_destination(self.destination) if self.destination else None

    def check(self) -> None:
        """Refuse at the start of the job what the upload would refuse at its end
        (a bucket without Object Lock when it is required): one line."""
        target = self.target()
        if target is not None:
            check_destination(target, self.storage)


@dataclass(frozen=True)
class Evidence:
    path: Path
    uri: str  # where it is stored ('' when only written locally)
    signed: bool


def collect(
    client: GatewayClient,
    session: GatewaySession,
    plan: Plan | None,
    context: CiContext,
    options: EvidenceOptions,
) -> Evidence:
    """Build the session's bundle, write it under ``bundle_dir`` and store it.

    Raises SpooledError (exit 1, naming the spooled file) when the upload failed
    after its retries: the bundle is safe in the spool for ``signoff audit flush``.
    """
    envelope: dict[str, Any] | None = None
    unsigned_reason: str | None = None
    try:
        envelope = client.attestation(session)
    except GatewayError as error:
        if error.error != "no-signing-key":
            raise
        unsigned_reason = "the gateway has no signing key (gateway.signing_key)"
    audit = client.audit(session)
    bundle = build_bundle(
        entries=audit.get("entries") or [],
        envelope=envelope,
        plan=plan.to_json() if plan is not None else None,
        unsigned_reason=unsigned_reason,
        run=_run(context, session),
        render_report=render_report,
    )
    key = bundle_key(
        repository=context.repository or "local",
        database=session.dbname,
        run_id=context.run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        attempt=context.attempt or 1,
        plan_hash=plan.hash if plan is not None else None,
    )
    options.bundle_dir.mkdir(parents=True, exist_ok=True)
    path = options.bundle_dir / f"{session.session_id}-{key.rsplit('/', 1)[-1]}"
    write_bundle(bundle, path)
    target = options.target()
    uri = ""
    if target is not None:
        uri = upload_bundle(
            bundle.to_bytes(),
            key=key,
            destination=target,
            spool_dir=options.bundle_dir / "spool",
            config=options.storage,
        ).uri
    return Evidence(path=path, uri=uri, signed=bundle.signed)


def _run(context: CiContext, session: GatewaySession) -> dict[str, Any]:
    return {
        "platform": context.platform,
        "repository": context.repository,
        "run_id": context.run_id,
        "attempt": context.attempt,
        "run_url": context.run_url,
        "event": context.event,
        "session_id": session.session_id,
    }


def dry_run_bundle(plan: Plan, runs: list[dict[str, Any]], bundle_dir: Path) -> Path:
    """The unsigned bundle of a dry-run: the plan, and what each statement did on the
    scratch copy (kept in the manifest as the runner's own, unverified, account). No
    gateway saw it, so there is no chain and no attestation, and the manifest says so."""
    bundle = build_bundle(
        entries=[],
        envelope=None,
        plan=plan.to_json(),
        unsigned_reason="dry-run: applied to a scratch database, not through a gateway",
        run={"dry_run": runs},
        render_report=render_report,
    )
    bundle_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return write_bundle(bundle, bundle_dir / f"dry-run-{stamp}-{plan.short_hash}.tar.gz")

