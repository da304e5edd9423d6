"""`signoff gateway install-guard` / `uninstall-guard`: idempotent, one line each, and
one clear line (no traceback) when it cannot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from gateway_harness import Gateway, running_gateway

from runner.gateway.dbguard.install import install


def _objects(url: str) -> tuple[str | None, int, int]:
    """(schema comment, enabled guard event triggers, TRUNCATE triggers), read directly."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT obj_description(n.oid, 'pg_namespace') FROM pg_namespace n "
            "WHERE nspname = 'signoff_guard'"
        ).fetchone()
        events = conn.execute(
            "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'signoff_guard%' "
            "AND evtenabled = 'O'"
        ).fetchone()
        truncates = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'signoff_guard_truncate'"
        ).fetchone()
    return (
        None if row is None else row[0],
        int(events[0]) if events else 0,
        int(truncates[0]) if truncates else 0,
    )


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch, guard=True) as running:
        yield running


def test_install_uninstall_reinstall_are_idempotent(gateway: Gateway) -> None:
    url = gateway.upstream_url
    first = gateway.guard_cli("install-guard", "--database", "ehr")
    assert first.returncode == 0, first.stderr
    assert "guard version 1 installed; TRUNCATE trigger on 2 table(s)" in first.stdout
    again = gateway.guard_cli("install-guard", "--database", "ehr")
    assert again.returncode == 0, again.stderr
    assert _objects(url) == ("signoff guard 1", 3, 2)  # nothing doubled

    removed = gateway.guard_cli("uninstall-guard", "--database", "ehr")
    assert removed.returncode == 0 and "guard removed" in removed.stdout, removed.stderr
    assert _objects(url) == (None, 0, 0)
    none = gateway.guard_cli("uninstall-guard", "--database", "ehr")
    assert none.returncode == 0 and "not installed" in none.stdout, none.stderr

    back = gateway.guard_cli("install-guard", "--database", "ehr")
    assert back.returncode == 0, back.stderr
    assert _objects(url) == ("signoff guard 1", 3, 2)
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.Error) as refused:
        conn.execute("TRUNCATE patients")
    assert refused.value.sqlstate == "42501"


def test_install_reports_a_role_that_cannot_in_one_line(gateway: Gateway) -> None:
    """The upstream owner role may not create event triggers: nothing changes."""
    done = gateway.guard_cli(
        "install-guard",
        "--database",
        "ehr",
        "--admin-url",
        f"postgresql://{gateway.role}:Upstr3am-s3cret-Do-Not-Leak@127.0.0.1:5432/{gateway.database}",
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "install-guard failed, nothing changed" in done.stderr
    assert "Upstr3am" not in done.stderr
    assert _objects(gateway.upstream_url) == (None, 0, 0)


def test_install_needs_a_guard_credential_or_an_admin_url(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as gateway:
        done = gateway.cli("install-guard", "--database", "ehr")
        unknown = gateway.cli("install-guard", "--database", "nope")
    assert done.returncode == 2 and "no [databases.guard] credential" in done.stderr
    assert unknown.returncode == 2 and "no database 'nope'" in unknown.stderr


def test_a_marker_role_installed_by_a_dba_may_mark_and_nothing_more(gateway: Gateway) -> None:
    """--admin-url's path: the DBA installs, the gateway's own role only marks."""
    url = gateway.upstream_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE ROLE signoff_marker_t LOGIN PASSWORD 'm4rker'")
    try:
        assert "installed" in install(url, marker_role="signoff_marker_t")
        marker_url = psycopg.conninfo.make_conninfo(url, user="signoff_marker_t", password="m4rker")
        with (
            psycopg.connect(marker_url, autocommit=True) as marker,
            psycopg.connect(url, autocommit=True) as victim,
        ):
            pid = victim.info.backend_pid
            made = marker.execute("SELECT signoff_guard.mark(%s, 'n1', 'h1')", (pid,)).fetchone()
            assert made == (True,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                marker.execute("SELECT * FROM signoff_guard.granted")
            marker.execute("SELECT signoff_guard.unmark(%s, ARRAY['n1'])", (pid,))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY signoff_marker_t")
            conn.execute("DROP ROLE signoff_marker_t")
