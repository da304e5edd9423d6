"""``signoff demo``: the whole flow on loopback, in one command (runner.demo.run).

Exit status: 0 the plan applied through the gateway and the bundle verified;
1 the job stopped (rejected, refused, failed) or the bundle did not verify;
2 what could not start (one line saying what to fix).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from runner.cliutil import handle_errors


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        # Nobody to answer: the answer is no (as a reviewer who never comes).
        click.echo(f"{question}n (no terminal to answer; pass --yes to approve)")
        return False
    return click.confirm(question.rstrip().removesuffix("[y/N]").rstrip(), default=False)


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("signoff-audit"),
    show_default=True,
    help="Where the audit bundle, its report.html and the gateway's public key go.",
)
@click.option("--yes", is_flag=True, help="Approve as the reviewer without asking.")
@handle_errors
def demo_command(out_dir: Path, yes: bool) -> None:
    """Run the whole flow on loopback: an embedded PostgreSQL, a loopback OIDC issuer
    and GitHub, the gateway; plan a destructive migration on a PR, approve it,
    apply it through the gateway, and verify the signed audit bundle."""
    from runner.demo.run import run_demo

    result = run_demo(out_dir, yes=yes, say=click.echo, ask=_ask)
    if result.exit_status == 0:
        click.echo(f"done: {result.reason}; the bundle verified")
    else:
        verdict = "verified" if result.verified else "not verified"
        click.echo(f"stopped: {result.outcome.value}: {result.reason} (bundle {verdict})")
    sys.exit(result.exit_status)
