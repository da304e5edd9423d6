"""``signoff audit ...``: the evidence, for auditors and operators.

``verify BUNDLE|s3://...`` checks a bundle offline with the gateway's public key
(runner.audit.offline): one line per check, a verdict, exit 0 (verified) or 1.
``flush --spool DIR --to DEST`` uploads the bundles an upload spooled
(runner.audit.storage): exit 0 when the spool is empty afterwards, 1 otherwise.
``replay BUNDLE [--pace real|fast]`` prints the session as a timeline (runner.audit.replay);
``report BUNDLE --public-key KEY`` renders the auditor's page with the verdict computed
now (runner.audit.report). Bad input is one line naming the fix, exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner import command
from runner.cliutil import handle_errors
from runner.errors import SignoffError

if TYPE_CHECKING:
    from runner.audit.offline import VerifyReport


@click.group("audit")
def audit() -> None:
    """Verify audit bundles offline, replay their sessions, render the auditor's report;
    upload spooled bundles."""


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


def _load_bundle(bundle: str) -> tuple[str, dict[str, bytes]]:
    from runner.audit.bundle import BundleError, read_bundle

    if bundle.startswith("s3://"):
        raise SignoffError(f"{bundle}: replay and report read a local bundle; download it first")
    path = Path(bundle.removeprefix("file://"))
    try:
        return str(path), read_bundle(path).files
    except BundleError as error:
        raise SignoffError(f"{error}; pass an audit bundle (.tar.gz)") from None


def _verified(files: dict[str, bytes], public_key: Path) -> tuple[VerifyReport, str]:
    from runner.audit.bundle import Bundle
    from runner.audit.dsse import DsseError, key_id, load_public_key_pem
    from runner.audit.offline import verify_loaded

    try:
        pem = public_key.read_bytes()
    except OSError as error:
        raise SignoffError(
            f"--public-key {public_key}: cannot read it ({error.strerror}); pass the gateway's "
            "public key file"
        ) from None
    try:
        key = load_public_key_pem(pem, what=f"--public-key {public_key}")
    except DsseError as error:
        raise SignoffError(str(error)) from None
    return verify_loaded(Bundle(dict(files)), pem, _key=key), key_id(key)


@audit.command("replay")
@click.argument("bundle")
@click.option(
    "--pace",
    type=click.Choice(["fast", "real"]),
    default="fast",
    show_default=True,
    help="real: sleep the recorded gap before each line (at most 2 s per gap).",
)
@click.option(
    "--public-key",
    "public_key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Verify the bundle first with the gateway's public key; exit 1 if it does not verify.",
)
@handle_errors
def replay_command(bundle: str, pace: str, public_key: Path | None) -> None:
    """Print BUNDLE's session as a timeline: who, when, what ran, how long, what came
    back, what was refused and why, the approvals."""
    from runner.audit.replay import header_lines, play, printable, session_view, summary_lines
    from runner.audit.replay import timeline as session_timeline

    source, files = _load_bundle(bundle)
    view = session_view(files)
    for line in header_lines(view, source):
        click.echo(printable(line))
    ok = True
    if public_key is None:
        click.echo(
            "  not verified here: pass --public-key, or run "
            f"`signoff audit verify {source} --public-key GATEWAY.pub`"
        )
    else:
        report, _ = _verified(files, public_key)
        ok = report.ok
        click.echo(f"  {report.verdict()}")
    click.echo("")
    play(session_timeline(view), pace=pace, echo=click.echo)
    click.echo("")
    for line in summary_lines(view):
        click.echo(printable(line))
    sys.exit(command.EXIT_OK if ok else command.EXIT_FINDINGS)


@audit.command("report")
@click.argument("bundle")
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The gateway's Ed25519 public key: the page's verdict is computed with it, now.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the page (default: BUNDLE's name with .report-viewed.html).",
)
@handle_errors
def report_command(bundle: str, public_key: Path, out: Path | None) -> None:
    """Render BUNDLE's auditor's report with the verification verdict computed now,
    with --public-key (the report inside a bundle cannot vouch for it). Exit 1 when
    the bundle does not verify (the page is written and says so)."""
    from runner.audit.report import render_report

    source, files = _load_bundle(bundle)
    report, keyid = _verified(files, public_key)
    report.source = source
    # Not STEM.report.html: that name is the page taken out of the bundle (signoff demo).
    target = out or Path(source.removesuffix(".tar.gz") + ".report-viewed.html")
    try:
        target.write_bytes(render_report(files, verification=report, key_id=keyid))
    except OSError as error:
        raise SignoffError(f"--out {target}: cannot write it ({error.strerror})") from None
    click.echo(report.verdict())
    click.echo(f"report: {target}")
    sys.exit(command.EXIT_OK if report.ok else command.EXIT_FINDINGS)
