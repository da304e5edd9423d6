"""``signoff audit ...``: the evidence, for auditors and operators.

``verify BUNDLE|s3://...`` checks a bundle offline with the gateway's public key
(runner.audit.offline): one line per check, a verdict, exit 0 (verified) or 1.
``flush --spool DIR --to DEST`` uploads the bundles an upload spooled
(runner.audit.storage): exit 0 when the spool is empty afterwards, 1 otherwise.
Bad input is one line naming the fix, exit 2. ``replay`` and the report come later.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from runner import command
from runner.cliutil import handle_errors
from runner.errors import SignoffError


@click.group("audit")
def audit() -> None:
    """Verify audit bundles offline; upload spooled bundles."""


@audit.command("verify")
@click.argument("bundle")
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The gateway's Ed25519 public key (PEM, the .pub `signoff gateway keygen` wrote).",
)
@click.option(
    "--s3-endpoint-url",
    envvar="SIGNOFF_S3_ENDPOINT_URL",
    help="For s3:// bundles on an S3-compatible store. Env: SIGNOFF_S3_ENDPOINT_URL.",
)
@handle_errors
def verify_command(bundle: str, public_key: Path, s3_endpoint_url: str | None) -> None:
    """Check BUNDLE (a .tar.gz path, file:// or s3://bucket/key) offline: signature,
    manifest, attested files, hash chain, plan, approvals, identity."""
    from runner.audit.offline import verify_bundle

    try:
        pem = public_key.read_bytes()
    except OSError as error:
        raise SignoffError(
            f"--public-key {public_key}: cannot read it ({error.strerror}); pass the gateway's "
            "public key file"
        ) from None
    report = verify_bundle(bundle, pem, s3_endpoint_url=s3_endpoint_url)
    for line in report.lines():
        click.echo(line)
    sys.exit(command.EXIT_OK if report.ok else command.EXIT_FINDINGS)


@audit.command("flush")
@click.option(
    "--spool",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The spool directory bundles were written to when their upload failed.",
)
@click.option("--to", "destination", required=True, help="s3://bucket/prefix or file://dir")
@click.option("--s3-endpoint-url", envvar="SIGNOFF_S3_ENDPOINT_URL", help="S3-compatible store.")
@click.option(
    "--sse", type=click.Choice(["AES256", "aws:kms"]), default="AES256", show_default=True
)
@click.option("--kms-key-id", help="The KMS key for --sse aws:kms.")
@click.option(
    "--lock-mode",
    type=click.Choice(["COMPLIANCE", "GOVERNANCE"]),
    default="COMPLIANCE",
    show_default=True,
)
@click.option("--retention-days", type=click.IntRange(min=1), default=2190, show_default=True)
@click.option(
    "--require-object-lock/--no-require-object-lock",
    default=True,
    show_default=True,
    help="Refuse a bucket without Object Lock.",
)
@handle_errors
def flush_command(
    spool: Path,
    destination: str,
    s3_endpoint_url: str | None,
    sse: str,
    kms_key_id: str | None,
    lock_mode: str,
    retention_days: int,
    require_object_lock: bool,
) -> None:
    """Upload every spooled bundle to --to; each leaves the spool once stored."""
    from runner.audit.storage import (
        StorageConfig,
        check_destination,
        flush_spool,
        parse_destination,
        spooled,
    )

    config = StorageConfig(
        sse=sse,
        kms_key_id=kms_key_id,
        lock_mode=lock_mode,
        retention_days=retention_days,
        require_object_lock=require_object_lock,
        endpoint_url=s3_endpoint_url,
    )
    target = parse_destination(destination)
    waiting = list(spooled(spool))
    if not waiting:
        click.echo(f"{spool}: nothing spooled")
        return
    check_destination(target, config)  # a refusal is one line, before any upload
    report = flush_spool(spool, target, config)
    for uploaded in report.uploaded:
        note = " (already there)" if uploaded.already_there else ""
        click.echo(f"uploaded {uploaded.uri}{note}")
    for path, reason in report.failed:
        click.echo(f"still spooled {path}: {reason}", err=True)
    click.echo(
        f"{len(report.uploaded)} of {len(waiting)} spooled bundle(s) uploaded to {target}"
        + (f"; {len(report.failed)} still in {spool}" if report.failed else "")
    )
    sys.exit(command.EXIT_OK if report.ok else command.EXIT_FINDINGS)
