"""A text with a backslash pipelined behind statements not yet answered, through the
real gateway: refused only when it reads differently with standard_conforming_strings
off (a '...' literal holding a backslash) and a statement ahead could have turned it
off (a function call, a SET of it, DO, ...). psycopg's pipeline mode with E'...'
literals behind INSERTs works; the classic injection behind a function that turns
the setting off is still refused, and the table it aims at is still there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from gateway_harness import Gateway, running_gateway
from pgclient import RawClient, bind, error_of, execute

from runner.gateway import wire


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        with psycopg.connect(scratch_db_url, autocommit=True) as admin:
            admin.execute("CREATE TABLE notes (id int, body text)")
            admin.execute("CREATE TABLE victim (id int)")
            for table in ("notes", "victim"):
                admin.execute(f"ALTER TABLE {table} OWNER TO {running.role}")
            # An existing function the role may call that turns the setting off:
            # what the relay's guard is for (the gateway refuses creating one).
            admin.execute(
                "CREATE FUNCTION scs_off() RETURNS text LANGUAGE sql AS "
                "$$ SELECT set_config('standard_conforming_strings', 'off', false) $$"
            )
        yield running


def bodies(gateway: Gateway) -> list[str]:
    with psycopg.connect(gateway.upstream_url) as direct:
        return [row[0] for row in direct.execute("SELECT body FROM notes ORDER BY id")]


def test_psycopg_pipeline_with_escape_literals_behind_inserts(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn, conn.pipeline():
        for i in range(5):
            conn.execute("INSERT INTO notes VALUES (%s, 'plain')", (i,))
        conn.execute("INSERT INTO notes VALUES (5, E'line\\nbreak')")
        conn.execute("INSERT INTO notes VALUES (6, 'C:\\dir')")  # a plain one, too
        conn.execute("INSERT INTO notes VALUES (7, $$back\\slash$$) -- a \\ here")
    assert bodies(gateway)[5:] == ["line\nbreak", "C:\\dir", "back\\slash"]


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_behind_a_function_that_turns_it_off_a_plain_literal_is_refused(
    gateway: Gateway, protocol: str
) -> None:
    """The injection reads as one string with the setting on and as a SELECT and a
    DROP with it off: behind a call of a function it is refused. The same with an
    E'...' literal reads alike either way, so it goes through and drops nothing."""
    session = gateway.session()
    injected = "SELECT 'a\\''; DROP TABLE victim; -- '"
    alike = "SELECT E'a\\'; DROP TABLE victim; -- '"

    def run(text: str) -> list[bytes]:
        if protocol == "simple":
            return [wire.query(text)]
        return [wire.parse(b"", text), bind(b"", b""), execute(), wire.sync()]

    client = RawClient(gateway.pg_port)
    try:
        assert client.startup(session["session_id"], "ehr", session["secret"])[-1][0] == "Z"
        client.send(*run("SELECT scs_off()"), *run(injected))
        client.until("Z")
        refused = error_of(client.until("Z"))
    finally:
        client.close()
    assert refused["C"] == "42501" and "answered" in refused["M"], refused

    client = RawClient(gateway.pg_port)
    try:
        assert client.startup(session["session_id"], "ehr", session["secret"])[-1][0] == "Z"
        client.send(*run("SELECT scs_off()"), *run(alike))
        client.until("Z")
        second = client.until("Z")
    finally:
        client.close()
    assert "E" not in [kind for kind, _ in second], error_of(second)
    with psycopg.connect(gateway.upstream_url) as direct:
        assert direct.execute("SELECT to_regclass('victim') IS NOT NULL").fetchone() == (True,)
