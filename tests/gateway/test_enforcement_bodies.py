"""Through the real gateway: a session without a grant cannot destroy data by hiding
the statement in a function, procedure, trigger, DEFAULT, view or DO block (issue 10).

Each reproducer is refused with 42501 naming the rule of the statement inside the
body, over the simple and the extended protocol, and the table it aims at still has
its rows, checked on PostgreSQL directly. Defining a function is allowed (it runs
nothing); a harmless body passes; a function created in the database before the
session is judged from pg_proc (read again for each new connection, so a function
replaced meanwhile is judged by its new body), and one created after the session's
analysis began is nowhere to be found, so it needs approval.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from gateway_harness import Gateway, running_gateway
from pgclient import RawClient, bind, error_of, execute

from runner.gateway import wire
from runner.gateway.dbguard.sql import TRUNCATE_TRIGGER

ROWS = 20


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        with psycopg.connect(scratch_db_url, autocommit=True) as admin:
            admin.execute("CREATE TABLE charts (id int PRIMARY KEY, note text)")
            admin.execute(f"INSERT INTO charts SELECT g, 'n' FROM generate_series(1, {ROWS}) g")
            # The gateway's role owns the table: without the analysis, it could empty it.
            admin.execute(f"ALTER TABLE charts OWNER TO {running.role}")
            # Functions made outside the gateway, before any session: read from pg_proc.
            admin.execute(
                "CREATE FUNCTION wipe_charts() RETURNS void LANGUAGE plpgsql AS "
                "$$ BEGIN DELETE FROM charts; END $$"
            )
            admin.execute(
                "CREATE FUNCTION charts_gone() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN TRUNCATE charts; RETURN NEW; END $$"
            )
            admin.execute("CREATE FUNCTION tidy() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$")
            # A DEFAULT over a harmless function: every INSERT runs whatever replaces it.
            admin.execute("CREATE FUNCTION note() RETURNS text LANGUAGE sql AS $$ SELECT 'n' $$")
            admin.execute("ALTER TABLE charts ALTER COLUMN note SET DEFAULT note()")
        yield running


def chart_rows(gateway: Gateway) -> int:
    with psycopg.connect(gateway.upstream_url) as direct:
        row = direct.execute("SELECT count(*) FROM charts").fetchone()
    assert row is not None
    return int(row[0])


class Session:
    """One connection through the gateway, speaking the simple or extended protocol."""

    def __init__(self, gateway: Gateway, protocol: str) -> None:
        self.protocol = protocol
        self.gateway = gateway
        self.session = session = gateway.session()
        self.client = RawClient(gateway.pg_port)
        started = self.client.startup(session["session_id"], "ehr", session["secret"])
        assert started[-1][0] == "Z", started

    def run(self, text: str) -> list[tuple[str, bytes]]:
        if self.protocol == "simple":
            self.client.send(wire.query(text))
        else:
            self.client.send(wire.parse(b"", text), bind(b"", b""), execute(), wire.sync())
        return self.client.until("Z")

    def allowed(self, text: str) -> list[tuple[str, bytes]]:
        answer = self.run(text)
        assert "E" not in [kind for kind, _ in answer], (text, error_of(answer))
        return answer

    def refused(self, text: str, rule: str) -> str:
        fields = error_of(self.run(text))
        assert fields["C"] == "42501", (text, fields)
        assert f"({rule}" in fields["M"] or f"{rule})" in fields["M"], (text, fields)
        return fields["M"]

    def findings(self, text: str) -> list[str]:
        """The finding messages the audit log holds for ``text``."""
        records = [r for r in self.gateway.audit(self.session) if r.get("text") == text]
        assert records, text
        return [str(f["message"]) for f in records[-1]["findings"]]

    def close(self) -> None:
        self.client.close()


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_bodies_that_destroy_are_refused_at_the_call(gateway: Gateway, protocol: str) -> None:
    session = Session(gateway, protocol)
    try:
        # The reproducer: defining is allowed, calling is refused.
        session.allowed("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ DROP TABLE charts $$")
        session.refused("SELECT f()", "SO101")
        assert "inside function public.f, line 1: drops table charts" in " ".join(
            session.findings("SELECT f()")
        )
        # PL/pgSQL, a DO block whose loop header deletes, a procedure.
        session.allowed(
            "CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS "
            "$$ BEGIN DELETE FROM charts; END $$"
        )
        session.refused("SELECT g()", "SO111")
        session.refused(
            "DO $$ DECLARE r record; BEGIN FOR r IN DELETE FROM charts RETURNING * "
            "LOOP END LOOP; END $$",
            "SO111",
        )
        # A trigger function may be defined; the trigger that would run it is refused.
        session.allowed(
            "CREATE FUNCTION tg() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN DELETE FROM charts; RETURN NEW; END $$"
        )
        session.refused(
            "CREATE TRIGGER tg AFTER INSERT ON charts FOR EACH ROW EXECUTE FUNCTION tg()",
            "SO111",
        )
        session.allowed("CREATE PROCEDURE p() LANGUAGE sql AS $$ TRUNCATE charts $$")
        session.refused("CALL p()", "SO109")
        # A DEFAULT and a view run the function later, for every row and every read.
        session.allowed(
            "CREATE FUNCTION boom() RETURNS int LANGUAGE sql AS "
            "$$ DELETE FROM charts RETURNING 1 $$"
        )
        session.refused("CREATE TABLE later (a int DEFAULT boom())", "SO111")
        session.refused("CREATE VIEW v AS SELECT boom()", "SO111")
        # A function shadowing a built-in counts only where search_path puts it first.
        session.allowed(
            "CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql AS "
            "$$ DELETE FROM charts; SELECT 'x' $$"
        )
        session.allowed("SELECT lower('A')")  # pg_catalog.lower
        session.allowed("SELECT lower('A')")  # (its allowed verdict is now cached)
        session.allowed("SET search_path = public, pg_catalog")
        session.refused("SELECT lower('A')", "SO111")
        session.allowed("RESET search_path")
        session.allowed("SELECT lower('A')")
        session.allowed("SELECT set_config('search_path', 'public, pg_catalog', false)")
        session.refused("SELECT lower('A')", "SO111")
        session.allowed("RESET search_path")
        # A harmless body passes; replacing it with a destructive one is refused (what
        # already calls it would run the new body), and the old one still runs.
        session.allowed("CREATE FUNCTION h() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$")
        session.allowed("SELECT h()")
        session.refused(
            "CREATE OR REPLACE FUNCTION h() RETURNS int LANGUAGE sql AS "
            "$$ DELETE FROM charts RETURNING 1 $$",
            "SO111",
        )
        session.allowed("SELECT h()")
    finally:
        session.close()
    assert chart_rows(gateway) == ROWS


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_functions_from_the_catalog_are_judged_by_their_bodies(
    gateway: Gateway, scratch_db_url: str, protocol: str
) -> None:
    session = Session(gateway, protocol)
    try:
        session.refused("SELECT wipe_charts()", "SO111")
        assert any(
            m.startswith("inside function public.wipe_charts, line 1 of its body: deletes")
            for m in session.findings("SELECT wipe_charts()")
        )
        session.refused(
            "CREATE TRIGGER gone AFTER INSERT ON charts FOR EACH ROW "
            "EXECUTE FUNCTION charts_gone()",
            "SO109",
        )
        session.allowed("SELECT count(*), lower('A'), now() FROM charts")
        session.allowed("SELECT tidy()")
        session.refused(
            "CREATE OR REPLACE FUNCTION note() RETURNS text LANGUAGE sql AS "
            "$$ DELETE FROM charts RETURNING 'x' $$",
            "SO111",
        )
        session.allowed("INSERT INTO charts (id) VALUES (1000)")
        session.allowed("DELETE FROM charts WHERE id = 1000")
        # Made after this session's analysis began: nothing it knows has its body.
        with psycopg.connect(gateway.upstream_url, autocommit=True) as direct:
            direct.execute(
                "CREATE FUNCTION late_wipe() RETURNS void LANGUAGE sql AS $$ DELETE FROM charts $$"
            )
            # And one it knew replaced behind its back (as another session might).
            direct.execute(
                "CREATE OR REPLACE FUNCTION tidy() RETURNS int LANGUAGE sql AS "
                "$$ DELETE FROM charts RETURNING 1 $$"
            )
        session.refused("SELECT late_wipe()", "SO011")
    finally:
        session.close()
    # A new session reads pg_proc again: both are judged by their bodies as they are.
    later = Session(gateway, protocol)
    try:
        later.refused("SELECT late_wipe()", "SO111")
        later.refused("SELECT tidy()", "SO111")
    finally:
        later.close()
    # The server's own default search_path (ALTER ROLE ... SET) is the session's.
    with psycopg.connect(gateway.upstream_url, autocommit=True) as direct:
        direct.execute(
            "CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql AS "
            "$$ DELETE FROM charts; SELECT 'x' $$"
        )
    with psycopg.connect(scratch_db_url, autocommit=True) as admin:
        admin.execute(f"ALTER ROLE {gateway.role} SET search_path = public, pg_catalog")
    shadowed = Session(gateway, protocol)
    try:
        shadowed.refused("SELECT lower('A')", "SO111")
        shadowed.allowed("SELECT pg_catalog.lower('A')")
    finally:
        shadowed.close()
    assert chart_rows(gateway) == ROWS
    with psycopg.connect(gateway.upstream_url) as direct:
        triggers = direct.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'charts'::regclass AND tgname <> %s",
            (TRUNCATE_TRIGGER,),  # the server-side guard's own, when installed
        ).fetchone()
    assert triggers == (0,)


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_an_overload_reached_by_its_argument_types_is_judged(
    gateway: Gateway, protocol: str
) -> None:
    # lower(5) runs public.lower(integer) although pg_catalog comes first on the path:
    # PostgreSQL matches argument types before it looks at path order.
    with psycopg.connect(gateway.upstream_url, autocommit=True) as direct:
        direct.execute(
            "CREATE FUNCTION public.lower(n integer) RETURNS text LANGUAGE sql AS "
            "$$ DELETE FROM charts; SELECT 'x' $$"
        )
        # The premise, on the database itself inside a transaction rolled back.
        with direct.transaction(force_rollback=True):
            direct.execute("SELECT lower(5)")
            emptied = direct.execute("SELECT count(*) FROM charts").fetchone()
        assert emptied == (0,)
    session = Session(gateway, protocol)
    try:
        session.refused("SELECT lower(5)", "SO111")
        # The analysis does not type arguments: with an overload of other types on the
        # path, any unqualified call may reach it (fail closed); qualified, it cannot.
        session.refused("SELECT lower('A')", "SO111")
        session.allowed("SELECT pg_catalog.lower('A')")
        # Made in the session itself: its own argument types are read from its CREATE.
        session.allowed(
            "CREATE FUNCTION public.upper(n bigint) RETURNS text LANGUAGE sql AS "
            "$$ TRUNCATE charts; SELECT 'x' $$"
        )
        session.refused("SELECT upper(7::bigint)", "SO109")
        session.allowed("SELECT pg_catalog.upper('a')")
    finally:
        session.close()
    assert chart_rows(gateway) == ROWS


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_a_write_is_judged_by_the_triggers_already_on_its_table(
    gateway: Gateway, scratch_db_url: str, protocol: str
) -> None:
    # A trigger made on the database directly (before the session): every INSERT into
    # charts would run charts_gone(), which empties the table.
    with psycopg.connect(scratch_db_url, autocommit=True) as admin:
        admin.execute(
            "CREATE TRIGGER gone BEFORE INSERT ON charts FOR EACH ROW "
            "EXECUTE FUNCTION charts_gone()"
        )
        admin.execute("CREATE TABLE notes (id int)")
        admin.execute(f"ALTER TABLE notes OWNER TO {gateway.role}")
    session = Session(gateway, protocol)
    try:
        session.refused("INSERT INTO charts (id) VALUES (1001)", "SO109")
        assert any(
            m.startswith("inside trigger function public.charts_gone (a trigger on public.charts)")
            for m in session.findings("INSERT INTO charts (id) VALUES (1001)")
        )
        session.allowed("UPDATE charts SET note = 'm' WHERE id = 1")  # fires no trigger
        session.allowed("INSERT INTO notes VALUES (1)")
    finally:
        session.close()
    assert chart_rows(gateway) == ROWS


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_an_insert_is_judged_by_the_functions_its_defaults_call(
    gateway: Gateway, scratch_db_url: str, protocol: str
) -> None:
    # charts.note defaults to note(); replaced on the database directly (not through
    # the gateway, which would have refused the replacement) by a body that empties
    # charts: every INSERT that leaves note out would run it.
    with psycopg.connect(scratch_db_url, autocommit=True) as admin:
        admin.execute(
            "CREATE OR REPLACE FUNCTION note() RETURNS text LANGUAGE sql AS "
            "$$ DELETE FROM charts RETURNING 'x' $$"
        )
    session = Session(gateway, protocol)
    try:
        session.refused("INSERT INTO charts (id) VALUES (1002)", "SO111")
        assert any(
            m.startswith("in a DEFAULT of public.charts, inside function public.note")
            for m in session.findings("INSERT INTO charts (id) VALUES (1002)")
        )
        session.allowed("DELETE FROM charts WHERE id = 1002")  # evaluates no default
    finally:
        session.close()
    assert chart_rows(gateway) == ROWS


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_a_read_of_a_view_is_judged_by_the_functions_it_calls(
    gateway: Gateway, scratch_db_url: str, protocol: str
) -> None:
    # A view made on the database directly over wipe_charts(): reading it empties charts.
    with psycopg.connect(scratch_db_url, autocommit=True) as admin:
        admin.execute("CREATE VIEW v_wipe AS SELECT wipe_charts()::text AS done")
        admin.execute("CREATE VIEW v_over AS SELECT done FROM v_wipe")
        admin.execute("CREATE VIEW v_rows AS SELECT count(*) AS n FROM charts")
        for name in ("v_wipe", "v_over", "v_rows"):
            admin.execute(f"ALTER VIEW {name} OWNER TO {gateway.role}")
    session = Session(gateway, protocol)
    try:
        session.refused("SELECT * FROM v_wipe", "SO111")
        session.refused("SELECT done FROM v_over", "SO111")
        assert any(
            m.startswith("in view public.v_wipe, inside function public.wipe_charts")
            for m in session.findings("SELECT done FROM v_over")
        )
        session.allowed("SELECT n FROM v_rows")
    finally:
        session.close()
    assert chart_rows(gateway) == ROWS


def test_with_a_grant_a_call_that_destroys_runs_once(gateway: Gateway) -> None:
    call = "SELECT wipe_charts()"
    granted = gateway.cli("grant", "--database", "ehr", "--sql", call, "--approver", "alice")
    assert granted.returncode == 0, granted.stderr
    session = Session(gateway, "simple")
    try:
        session.allowed(call)  # the grant's one run: the body empties charts
        assert chart_rows(gateway) == 0
        with psycopg.connect(gateway.upstream_url, autocommit=True) as direct:
            direct.execute(f"INSERT INTO charts SELECT g, 'n' FROM generate_series(1, {ROWS}) g")
        session.refused(call, "SO111")  # spent
    finally:
        session.close()
    assert chart_rows(gateway) == ROWS
