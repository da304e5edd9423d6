"""``signoff gateway ...``: serve, check-config, keygen, grant, audit verify/show.

Thin like the rest of the CLI: options in, one library call, a renderer out.
Heavy imports (FastAPI, uvicorn) happen inside the commands that need them, so
``signoff lint`` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from runner.errors import SignoffError

if TYPE_CHECKING:  # imported lazily at run time: `signoff gateway --help` stays quick
    from runner.gateway.config import GatewayConfig
    from runner.gateway.model import StateStore, Upstream


def _config_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="SIGNOFF_GATEWAY_CONFIG",
        default=Path("gateway.toml"),
        show_default=True,
        help="The gateway's configuration (env SIGNOFF_GATEWAY_CONFIG).",
    )(func)


def _load(config_path: Path) -> GatewayConfig:
    """The configuration, or exit 2 with its one-line error."""
    from runner.gateway.config import load_gateway_config

    try:
        return load_gateway_config(config_path)
    except SignoffError as error:
        _fail(str(error))


def _open_store(config: GatewayConfig) -> StateStore:
    """The configured state store, or exit 2 with its one-line error."""
    from runner.gateway.store import StoreError, open_store

    try:
        return open_store(config.state_url)
    except StoreError as error:
        _fail(str(error))


def _fail(message: str, status: int = 2) -> NoReturn:
    click.echo(f"signoff: error: {message}", err=True)
    sys.exit(status)


@click.group()
def gateway() -> None:
    """The gateway: OIDC sessions, the PostgreSQL proxy, grants and the audit log."""


@gateway.command()
@_config_option
def serve(config_path: Path) -> None:
    """Serve the HTTP API and the PostgreSQL listener until interrupted."""
    config = _load(config_path)
    from runner.gateway.preflight import preflight

    problems = preflight(config)  # fail at start, not at the first connection
    if problems:
        _fail(
            problems[0] + (f" (and {len(problems) - 1} more: check-config)" if problems[1:] else "")
        )
    from runner.gateway.serve import StartupError, run

    # The gateway's own log lines (audit write failures, a repaired journal, the
    # audit totals at exit) go to stderr; uvicorn's are set up by uvicorn.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("uvicorn").propagate = False
    try:
        run(config)
    except StartupError as error:
        _fail(str(error))


@gateway.command("check-config")
@_config_option
def check_config(config_path: Path) -> None:
    """Validate the configuration and print what the gateway will enforce."""
    config = _load(config_path)
    from runner.gateway.preflight import preflight

    problems = preflight(config)
    if problems:
        # Nothing is "valid" until everything the gateway reads at start has answered.
        for problem in problems:
            click.echo(f"signoff: error: {problem}", err=True)
        sys.exit(2)
    from runner.gateway.dbguard.status import database_report
    from runner.gateway.dbguard.testing import SWITCH, guard_only

    # Each database as its upstream role sees it: the guard, and least privilege.
    guard_lines: dict[str, str] = {}
    for database in config.databases.values():
        guard_lines[database.name], warnings = database_report(database)
        for warning in warnings:
            click.echo(f"signoff: warning: {warning}", err=True)
    if guard_only():
        click.echo(f"signoff: warning: {SWITCH}: the analysis is off (tests only)", err=True)
    out = [
        f"{config_path}: valid",
        f"audience: {config.audience}",
        f"sessions: {config.session_ttl} (at most {config.max_session_ttl})",
        f"listen: http {config.http_host}:{config.http_port}, "
        f"postgresql {config.pg_host}:{config.pg_port} "
        f"({'TLS' if config.tls_cert else 'no TLS; cleartext passwords only from loopback'})",
        f"state: {config.state_url.split('@')[-1]}",
        "issuers:",
        *(f"  {i.name}: {i.issuer} ({', '.join(i.algorithms)})" for i in config.issuers),
        "databases:",
        *(
            f"  {d.name}: {d.user}@{d.host}:{d.port}/{d.dbname}, password from "
            + (f"${d.password_env}" if d.password_env else d.password_file or "nowhere (trust)")
            + f"\n    {guard_lines[d.name]}"
            for d in config.databases.values()
        ),
        "access:",
        *(
            f"  {a.database} as {a.role} for {a.issuer} tokens with "
            + ", ".join(f"{k}={v}" for k, v in a.claims.items())
            for a in config.access
        ),
        "approvals: "
        f"GitHub {config.approvals.github_permission}, GitLab {config.approvals.gitlab_access}, "
        + ", ".join(f"{n}: {config.min_approvals(n)} approver(s)" for n in config.databases),
        "code hosts:",
        *(
            f"  {h.platform}: {h.api_url}, token from "
            + (f"${h.token_env}" if h.token_env else str(h.token_file))
            for h in config.code_hosts.values()
        ),
        "roles:",
    ]
    for role in config.roles.values():
        verdicts = ", ".join(f"{c.value}: {v.value}" for c, v in role.categories.items())
        rules = ", ".join(f"{r}: {v.value}" for r, v in role.rules.items())
        out.append(f"  {role.name}: {verdicts}" + (f"; {rules}" if rules else ""))
    click.echo("\n".join(out))


@gateway.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("gateway-ed25519.pem"),
    show_default=True,
    help="Private key file; the public key goes to the same name with .pub.",
)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def keygen(out: Path, force: bool) -> None:
    """Write the Ed25519 key pair the gateway signs attestations with."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public_path = out.with_name(out.name + ".pub")
    for path in (out, public_path):
        if path.exists() and not force:
            _fail(f"{path} exists; pass --force to replace it")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    os.chmod(out, 0o600)
    public_path.write_bytes(public_pem)
    click.echo(f"wrote {out} (private, mode 600) and {public_path}", err=True)
    # The public key auditors verify bundles with: on stdout, to hand over as it is.
    click.echo(public_pem.decode("ascii"), nl=False)


@gateway.command()
@_config_option
@click.option("--database", required=True, help="Configured database name.")
@click.option("--fingerprint", "fingerprints", multiple=True, help="Statement fingerprint.")
@click.option("--sql", help="SQL whose statements to grant (fingerprints computed here).")
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A plan.json: grant every statement of it that needs approval.",
)
@click.option("--approver", required=True, help="Who approved (recorded in the audit log).")
@click.option("--evidence", help="URL of the approval (PR comment, ticket).")
@click.option("--session", "session_id", help="Limit the grant to one session.")
def grant(
    config_path: Path,
    database: str,
    fingerprints: tuple[str, ...],
    sql: str | None,
    plan_path: Path | None,
    approver: str,
    evidence: str | None,
    session_id: str | None,
) -> None:
    """Allow statements that need approval to run, each once (admin)."""
    from runner.gateway.service import GatewayService
    from runner.gateway.store import StoreError
    from runner.plan.model import Plan
    from runner.plan.statements import split_statements

    config = _load(config_path)
    if database not in config.databases:
        _fail(
            f"no database {database!r} in {config_path}; use one of {', '.join(config.databases)}"
        )
    wanted: list[tuple[str, str | None]] = [(f, None) for f in fingerprints]
    if sql:
        wanted += [(s.fingerprint, None) for s in split_statements(sql)]
    if plan_path is not None:
        try:
            plan = Plan.loads(plan_path.read_text(encoding="utf-8"))
        except (ValueError, KeyError) as error:
            _fail(f"{plan_path}: not a valid plan ({error})")
        wanted += [(s.fingerprint, plan.hash) for s in plan.statements if s.needs_approval]
    if not wanted:
        _fail("nothing to grant; pass --fingerprint, --sql or --plan")
    store = _open_store(config)
    service = GatewayService(config, store)
    try:
        for fingerprint, plan_hash in wanted:
            made = service.add_grant(
                database=database,
                fingerprint=fingerprint,
                approver=approver,
                evidence_url=evidence,
                session_id=session_id,
                plan_hash=plan_hash,
            )
            click.echo(f"{made.id} {database} {fingerprint} (once)")
    except StoreError as error:
        _fail(str(error))
    finally:
        service.close()
        store.close()


def _guard_target(config: GatewayConfig, database: str, admin_url: str | None) -> Upstream | str:
    """Whom install-guard connects as: --admin-url, else the [databases.guard] role."""
    from runner.errors import ConfigError

    if database not in config.databases:
        _fail(f"no database {database!r} in the config; use one of {', '.join(config.databases)}")
    if admin_url:
        return admin_url
    try:
        target = config.databases[database].guard_upstream()
    except ConfigError as error:
        _fail(str(error))
    if target is None:
        _fail(
            f"databases.{database} has no [databases.guard] credential; add one (user, "
            "password_env) or pass --admin-url postgresql://ADMIN@HOST/DB"
        )
    return target


_admin_url_option = click.option(
    "--admin-url",
    envvar="SIGNOFF_GUARD_ADMIN_URL",
    help="Connect as this role instead of [databases.guard] (a DBA's own; env "
    "SIGNOFF_GUARD_ADMIN_URL). The guard role may then mark.",
)


@gateway.command("install-guard")
@_config_option
@click.option("--database", required=True, help="Configured database name.")
@_admin_url_option
def install_guard(config_path: Path, database: str, admin_url: str | None) -> None:
    """Install the server-side guard in a database (once, by a DBA; again to update)."""
    from runner.gateway.dbguard.install import GuardError, install

    config = _load(config_path)
    target = _guard_target(config, database, admin_url)
    guard = config.databases[database].guard
    try:
        message = install(target, marker_role=None if guard is None else guard.user)
    except GuardError as error:
        _fail(f"databases.{database}: {error}")
    click.echo(f"{database}: {message}")


@gateway.command("uninstall-guard")
@_config_option
@click.option("--database", required=True, help="Configured database name.")
@_admin_url_option
def uninstall_guard(config_path: Path, database: str, admin_url: str | None) -> None:
    """Remove the server-side guard from a database."""
    from runner.gateway.dbguard.install import GuardError, uninstall

    config = _load(config_path)
    target = _guard_target(config, database, admin_url)
    try:
        message = uninstall(target)
    except GuardError as error:
        _fail(f"databases.{database}: {error}")
    click.echo(f"{database}: {message}")


@gateway.group()
def audit() -> None:
    """Read and verify the gateway's hash-chained audit log."""


@audit.command()
@_config_option
def verify(config_path: Path) -> None:
    """Check the whole chain: every hash, every link, no gaps."""
    from runner.audit.verify import verify_chain
    from runner.gateway.store import StoreError

    config = _load(config_path)
    store = _open_store(config)
    try:
        report = verify_chain(store.entries())
    except StoreError as error:
        # An entry that cannot even be read (the SQLite store's journal edited into
        # something that is not an entry) is a broken chain, not a usage error.
        click.echo(f"audit chain BROKEN: {error}")
        sys.exit(1)
    finally:
        store.close()
    if not report.ok:
        click.echo(f"audit chain BROKEN: {report.problem}")
        sys.exit(1)
    incomplete = (
        f"; {len(report.incomplete)} statement(s) with no outcome" if report.incomplete else ""
    )
    click.echo(f"audit chain ok: {report.count} entries{incomplete}")


@audit.command()
@_config_option
@click.option("--session", "session_id", help="Only this session's records.")
def show(config_path: Path, session_id: str | None) -> None:
    """Print the audit records (statements merged with their outcomes) as JSON lines."""
    from runner.audit.records import merge_records
    from runner.gateway.store import StoreError

    config = _load(config_path)
    store = _open_store(config)
    try:
        for record in merge_records(store.entries(session_id=session_id)):
            click.echo(json.dumps(record, sort_keys=True))
    except StoreError as error:
        _fail(str(error), 1)
    finally:
        store.close()
