"""``signoff apply`` (the CI job) and ``signoff diff``: options in, one library call
(runner.job.run_job, runner.plan.diff), a renderer out (runner.jobreport)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from runner import jobreport
from runner import tomlfields as fields
from runner.audit.storage import StorageConfig
from runner.cliutil import State, fail_on_option, handle_errors, resolve_settings
from runner.errors import SignoffError
from runner.evidence import EvidenceOptions
from runner.job import JobOptions, run_job
from runner.plan.model import Plan


def parse_seconds(value: str, option: str) -> float:
    """``"90"``, ``"90s"``, ``"30m"``, ``"1h"`` -> seconds (the TOML files' reader)."""
    return fields.duration(value, "signoff apply", option, bare_seconds=True).total_seconds()


@click.command("apply")
@click.option(
    "--gateway-url",
    envvar="SIGNOFF_GATEWAY_URL",
    required=True,
    help="The gateway's HTTP API, e.g. https://gateway.internal. Env: SIGNOFF_GATEWAY_URL.",
)
@click.option(
    "--database",
    envvar="SIGNOFF_DATABASE",
    required=True,
    help="The database name in the gateway's configuration. Env: SIGNOFF_DATABASE.",
)
@click.option(
    "--alembic-ini",
    envvar="SIGNOFF_ALEMBIC_INI",
    default="alembic.ini",
    show_default=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The alembic project's ini file.",
)
@click.option(
    "--audience",
    envvar="SIGNOFF_AUDIENCE",
    default=None,
    help="The OIDC audience the gateway expects (default: signoff). Env: SIGNOFF_AUDIENCE.",
)
@click.option(
    "--id-token-file",
    envvar="SIGNOFF_ID_TOKEN_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read the OIDC token from this file (outside GitHub Actions and GitLab CI).",
)
@click.option(
    "--wait",
    envvar="SIGNOFF_WAIT",
    default="30m",
    show_default=True,
    help="How long to wait for an approval on the PR/MR.",
)
@click.option(
    "--lock-wait",
    envvar="SIGNOFF_LOCK_WAIT",
    default="10m",
    show_default=True,
    help="How long to wait for another apply to the same database to finish.",
)
@click.option(
    "--plan-only",
    envvar="SIGNOFF_PLAN_ONLY",
    is_flag=True,
    help="Plan and submit for review; do not wait or apply (the pull-request job).",
)
@click.option(
    "--online",
    envvar="SIGNOFF_ONLINE",
    is_flag=True,
    help="Run alembic online through the gateway (for migrations that need a live "
    "connection) instead of the planned SQL; statements are matched to grants by fingerprint.",
)
@click.option(
    "--bundle-dir",
    envvar="SIGNOFF_BUNDLE_DIR",
    default="signoff-audit",
    show_default=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the run's audit bundle is written (and spooled when an upload fails).",
)
@click.option("--s3-bucket", envvar="SIGNOFF_S3_BUCKET", help="Store the bundle in this bucket.")
@click.option("--s3-prefix", envvar="SIGNOFF_S3_PREFIX", default="", help="Key prefix.")
@click.option("--s3-endpoint-url", envvar="SIGNOFF_S3_ENDPOINT_URL", help="An S3-compatible store.")
@click.option(
    "--s3-object-lock/--no-s3-object-lock",
    envvar="SIGNOFF_S3_OBJECT_LOCK",
    default=True,
    show_default=True,
    help="Require Object Lock on the bucket (COMPLIANCE retention, six years).",
)
@fail_on_option
@click.pass_obj
@handle_errors
def apply_command(
    state: State,
    gateway_url: str,
    database: str,
    alembic_ini: Path,
    audience: str | None,
    id_token_file: Path | None,
    wait: str,
    lock_wait: str,
    plan_only: bool,
    online: bool,
    bundle_dir: Path,
    s3_bucket: str | None,
    s3_prefix: str,
    s3_endpoint_url: str | None,
    s3_object_lock: bool,
    fail_on: str | None,
) -> None:
    """Plan, get the plan approved on the PR/MR, and apply it, all through the gateway.

    Run inside a GitHub Actions or GitLab CI job: the job's OIDC token is exchanged
    for a gateway session (no database password in CI). Exit 0 applied (or, with
    --plan-only, nothing needs approval); 1 failed, rejected or denied; 2 usage or
    environment error; 3 waiting for approval (--plan-only) or no approval within --wait.
    """
    evidence = EvidenceOptions(
        bundle_dir=bundle_dir,
        destination=f"s3://{s3_bucket}/{s3_prefix.strip('/')}" if s3_bucket else None,
        storage=StorageConfig(endpoint_url=s3_endpoint_url, require_object_lock=s3_object_lock),
    )
    settings = resolve_settings(state, alembic_ini.parent, fail_on, None)
    options = JobOptions(
        gateway_url=gateway_url,
        database=database,
        alembic_ini=alembic_ini,
        settings=settings,
        audience=audience or "signoff",
        check_audience=audience is not None,
        id_token_file=id_token_file,
        plan_only=plan_only,
        online=online,
        wait_s=parse_seconds(wait, "--wait"),
        lock_wait_s=parse_seconds(lock_wait, "--lock-wait"),
        lock_timeout_ms=settings.lock_timeout_ms,
        evidence=evidence,
    )
    if not alembic_ini.is_file():
        raise SignoffError(f"{alembic_ini}: no such file; pass --alembic-ini with the project's")
    env = dict(os.environ)
    result = run_job(options, env=env, say=lambda line: click.echo(line, err=True))
    if env.get("GITHUB_ACTIONS") == "true":
        click.echo(jobreport.workflow_annotations(result), nl=False)
    jobreport.write_github_files(
        result, env, bundle_uri=result.evidence.uri if result.evidence else ""
    )
    click.echo(f"signoff: {result.outcome.value}: {result.reason}", err=True)
    sys.exit(result.exit_status)


@click.command("diff")
@click.argument("old", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("new", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.pass_obj
@handle_errors
def diff_command(state: State, old: Path, new: Path) -> None:
    """What changed between two saved plans (signoff plan --format json), statement by
    statement; exit 1 when they differ."""
    from runner.plan.diff import diff_plans, render_text

    plans = []
    for path in (old, new):
        try:
            plans.append(Plan.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as error:
            raise SignoffError(f"{path}: not a Signoff plan ({error})") from None
    changes = diff_plans(plans[0], plans[1])
    click.echo(render_text(changes), nl=False)
    sys.exit(0 if plans[0].hash == plans[1].hash else 1)


__all__ = ["apply_command", "diff_command", "parse_seconds"]
