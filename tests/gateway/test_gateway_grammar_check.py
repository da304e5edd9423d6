"""Through the real gateway: a text PostgreSQL reads as other statements than the analysis
did is refused (SO007), the smuggled DROP never runs.

sqlglot's tokenizer reads ``=|/*`` as the operator ``=|/`` followed by ``*``, so the
``/*--*/`` that PostgreSQL reads as a block comment becomes, for sqlglot, ``*`` and a
line comment that hides the rest of the text: a harmless-looking SELECT. PostgreSQL
runs the SELECT (with an operator ``=|`` the session may create) and then the DROP.
The database is checked directly afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from gateway_harness import Gateway, running_gateway
from pgclient import RawClient, bind, error_of, execute

from runner.gateway import wire

SMUGGLED = "SELECT id FROM patients WHERE id =|/*--*/ 1; DROP TABLE patients"


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as gw:
        with psycopg.connect(gw.upstream_url, autocommit=True) as conn:
            # The operator that makes PostgreSQL's reading of SMUGGLED run: an equality
            # spelt "=|", made outside the gateway.
            conn.execute(
                "CREATE FUNCTION bar_eq(bigint, int) RETURNS bool"
                " LANGUAGE sql IMMUTABLE AS 'SELECT $1 = $2'"
            )
            conn.execute("CREATE OPERATOR =| (LEFTARG = bigint, RIGHTARG = int, FUNCTION = bar_eq)")
        yield gw


def _rows(gateway: Gateway) -> int:
    with psycopg.connect(gateway.upstream_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'patients'").fetchone()
        assert row is not None
        if row[0] == 0:
            return -1
        counted = conn.execute("SELECT count(*) FROM patients").fetchone()
        assert counted is not None
        return int(counted[0])


def test_postgresql_really_runs_both_statements(gateway: Gateway) -> None:
    # The premise, directly on the database (in a transaction rolled back): the text is
    # two statements to PostgreSQL and the second drops the table.
    with psycopg.connect(gateway.upstream_url) as conn:
        conn.execute(SMUGGLED.encode(), prepare=False)  # type: ignore[call-overload]
        gone = conn.execute("SELECT to_regclass('patients') IS NULL").fetchone()
        conn.rollback()
    assert gone == (True,)
    assert _rows(gateway) == 20


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_a_text_the_grammars_read_differently_is_refused(gateway: Gateway, protocol: str) -> None:
    session = gateway.session()
    client = RawClient(gateway.pg_port)
    try:
        started = client.startup(session["session_id"], "ehr", session["secret"])
        assert started[-1][0] == "Z", started
        text = SMUGGLED if protocol == "simple" else "SELECT id FROM patients WHERE id =|/*--*/ 1"
        if protocol == "simple":
            client.send(wire.query(text))
        else:
            client.send(wire.parse(b"", text), bind(b"", b"", ()), execute(), wire.sync())
        fields = error_of(client.until("Z"))
    finally:
        client.close()
    assert fields["C"] == "42501", fields
    assert "SO007" in fields["M"], fields
    assert _rows(gateway) == 20
