"""The destructive rules (SO101-SO115): behaviour their own examples cannot express.

Message text naming the object, state carried across statements (tables created
earlier in the plan), statements read out of DO blocks and EXECUTE strings,
fallbacks for statements sqlglot cannot parse, the always-true predicate folder,
and the labelled corpus.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from runner.plan.analyse import view_of
from runner.plan.build import ServerFacts, SqlSource, build_plan, lint_text
from runner.plan.model import Category, Decision
from runner.plan.policy import Policy
from runner.plan.rules import catalogue
from runner.plan.rules.base import Context
from runner.plan.rules.unbounded_dml import always_true
from runner.plan.schema import SchemaState
from runner.plan.statements import split_statements

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "lint_examples.json"
DESTRUCTIVE_IDS = [f"SO{n}" for n in range(101, 116)]


def findings(
    sql: str,
    *,
    server_version: int | None = 150000,
    columns: dict[str, dict[str, str]] | None = None,
) -> list[tuple[str, str]]:
    facts = ServerFacts(columns=columns) if columns else None
    plan = lint_text(sql, policy=Policy(server_version=server_version), facts=facts)
    return [(f.rule, f.message) for _, f in plan.findings]


def destructive(
    sql: str,
    *,
    server_version: int | None = 150000,
    columns: dict[str, dict[str, str]] | None = None,
) -> list[tuple[str, str]]:
    found = findings(sql, server_version=server_version, columns=columns)
    return [(rule, message) for rule, message in found if rule in DESTRUCTIVE_IDS]


def rules_of(
    sql: str,
    *,
    server_version: int | None = 150000,
    columns: dict[str, dict[str, str]] | None = None,
) -> set[str]:
    return {rule for rule, _ in destructive(sql, server_version=server_version, columns=columns)}


# -- the catalogue entries -------------------------------------------------------------


def test_destructive_rules_are_registered_and_documented() -> None:
    rules = catalogue()
    for rule_id in DESTRUCTIVE_IDS:
        rule = rules[rule_id]
        assert rule.category is Category.DESTRUCTIVE
        assert len(rule.triggers) >= 2 and len(rule.passes) >= 2, rule_id
        assert "'" in rule.safer or "(" in rule.safer, f"{rule_id}: safer names no SQL"


def test_destructive_findings_need_approval_and_cannot_be_waived_inline() -> None:
    sql = "-- signoff: allow SO101 because the table is empty\nDROP TABLE users"
    plan = lint_text(sql, policy=Policy(server_version=150000))
    drop = [f for _, f in plan.findings if f.rule == "SO101"]
    assert drop and drop[0].decision is Decision.NEEDS_APPROVAL


# -- the labelled corpus --------------------------------------------------------------


def _corpus() -> list[dict[str, str]]:
    if not CORPUS.is_file():
        return []
    return list(json.loads(CORPUS.read_text(encoding="utf-8")))


def _cases(destructive: bool) -> list[Any]:
    if not CORPUS.is_file():
        return [pytest.param(None, id="corpus-absent", marks=pytest.mark.skip(f"{CORPUS} absent"))]
    return [
        pytest.param(e, id=e["id"])
        for e in _corpus()
        if (e["expected_category"] == "destructive") == destructive
    ]


@pytest.mark.parametrize("example", _cases(destructive=True))
def test_corpus_destructive_examples_are_flagged(example: dict[str, str]) -> None:
    plan = lint_text(example["sql"], policy=Policy(server_version=150000))
    categories = {f.category for _, f in plan.findings}
    assert Category.DESTRUCTIVE in categories, example["sql"]


@pytest.mark.parametrize("example", _cases(destructive=False))
def test_corpus_other_examples_have_no_destructive_finding(example: dict[str, str]) -> None:
    assert destructive(example["sql"]) == [], example["sql"]


@pytest.mark.skipif(not CORPUS.is_file(), reason="corpus absent")
def test_corpus_has_every_destructive_id_from_d001_to_d033() -> None:
    ids = {e["id"] for e in _corpus() if e["expected_category"] == "destructive"}
    assert {f"D{n:03d}" for n in range(1, 34, 2)} <= ids


# -- text that only looks destructive ----------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT $tag$DROP TABLE users$tag$ AS not_executed",
        "CREATE OR REPLACE FUNCTION purge_sessions() RETURNS void LANGUAGE sql"
        " AS $$ DELETE FROM sessions $$",
        "CREATE FUNCTION wipe() RETURNS void LANGUAGE plpgsql"
        " AS $$ BEGIN TRUNCATE orders; DROP TABLE users; END $$",
        "/* TRUNCATE orders; */\nALTER TABLE orders ADD COLUMN note text",
        "-- DROP TABLE users;\nSELECT 1",
        "SELECT 'DELETE FROM sessions'",
        "COMMENT ON TABLE users IS 'DROP TABLE users'",
        "CREATE OR REPLACE VIEW active_users AS SELECT * FROM users WHERE active",
        "DROP MATERIALIZED VIEW IF EXISTS user_stats",
        "DROP VIEW IF EXISTS active_users",
        "DROP INDEX CONCURRENTLY IF EXISTS users_email_idx",
        "ALTER TABLE users DROP CONSTRAINT users_email_key",
    ],
)
def test_text_that_only_looks_destructive(sql: str) -> None:
    assert destructive(sql) == []


# -- messages name the object -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "rule", "message"),
    [
        ("DROP TABLE users", "SO101", "drops table users and all its rows"),
        (
            'DROP TABLE IF EXISTS "billing"."Invoice Lines"',
            "SO101",
            'drops table "billing"."Invoice Lines" and all its rows',
        ),
        ("ALTER TABLE patients DROP COLUMN ssn", "SO102", "drops column patients.ssn and its data"),
        ("DROP SCHEMA archive CASCADE", "SO103", "schema archive"),
        ("DROP DATABASE analytics WITH (FORCE)", "SO104", "database analytics"),
        ("DROP TYPE order_status_old", "SO105", "type order_status_old"),
        ("DROP DOMAIN zip CASCADE", "SO105", "domain zip and every column"),
        ("DROP SEQUENCE invoice_seq", "SO106", "sequence invoice_seq and its current position"),
        ("DROP EXTENSION hstore", "SO107", "extension hstore"),
        ("DROP OWNED BY app_old", "SO108", "role app_old"),
        ("TRUNCATE orders", "SO109", "truncates table orders: deletes every row"),
        ("TRUNCATE orders CASCADE", "SO110", "foreign key to orders"),
        ("DROP TYPE mood CASCADE", "SO110", "every column declared with type mood"),
        ("DELETE FROM sessions", "SO111", "deletes every row of sessions (no WHERE clause)"),
        ("DELETE FROM sessions WHERE 1 = 1", "SO111", "WHERE 1 = 1 is always true"),
        ("UPDATE users SET status = NULL", "SO112", "updates every row of users"),
        (
            "MERGE INTO prices p USING staged s ON p.id = s.id WHEN MATCHED THEN DELETE",
            "SO113",
            "every row of prices that matches a row of staged",
        ),
        ("ALTER TABLE sessions SET UNLOGGED", "SO115", "table sessions unlogged"),
    ],
)
def test_messages_name_the_object(sql: str, rule: str, message: str) -> None:
    messages = [m for r, m in destructive(sql) if r == rule]
    assert messages, f"{rule} did not fire on {sql}"
    assert any(message in m for m in messages), messages


def test_one_message_per_dropped_object() -> None:
    found = destructive("DROP TABLE a, b, public.c")
    assert [m for r, m in found if r == "SO101"] == [
        "drops table a and all its rows",
        "drops table b and all its rows",
        "drops table public.c and all its rows",
    ]
    columns = [m for r, m in destructive("ALTER TABLE t DROP COLUMN x, DROP y") if r == "SO102"]
    assert columns == ["drops column t.x and its data", "drops column t.y and its data"]


# -- state across statements --------------------------------------------------------------


def test_a_table_created_and_dropped_in_the_same_plan_is_no_data_loss() -> None:
    sql = """
        CREATE TABLE tmp_import (id int, payload jsonb);
        INSERT INTO tmp_import SELECT id, payload FROM staging_source;
        UPDATE tmp_import SET payload = NULL;
        DELETE FROM tmp_import;
        ALTER TABLE tmp_import DROP COLUMN payload;
        TRUNCATE tmp_import;
        DROP TABLE tmp_import;
    """
    assert destructive(sql) == []


def test_created_in_plan_follows_postgres_name_folding() -> None:
    assert destructive("CREATE TABLE public.Staging (id int);\nDROP TABLE staging") == []
    # A quoted name is another table.
    assert rules_of('CREATE TABLE "Staging" (id int);\nDROP TABLE staging') == {"SO101"}


def test_only_the_tables_not_created_in_the_plan_are_reported() -> None:
    found = destructive("CREATE TABLE scratch (id int);\nDROP TABLE scratch, users")
    assert found == [("SO101", "drops table users and all its rows")]


def test_a_table_created_in_an_earlier_revision_of_the_same_plan_counts() -> None:
    # Two sources analysed as one plan: the build carries the state across them.
    plan = build_plan(
        [
            SqlSource("revision a", "CREATE TABLE audit_tmp (id int);", revision="a"),
            SqlSource("revision b", "DROP TABLE audit_tmp;", revision="b"),
        ],
        policy=Policy(server_version=150000),
    )
    assert not [f for _, f in plan.findings if f.category is Category.DESTRUCTIVE]


def test_a_name_reused_by_a_renamed_existing_table_is_not_new() -> None:
    sql = """
        CREATE TABLE tmp (id int);
        DROP TABLE tmp;
        ALTER TABLE legacy RENAME TO tmp;
        DROP TABLE tmp;
    """
    assert destructive(sql) == [("SO101", "drops table tmp and all its rows")]


def test_create_table_if_not_exists_may_find_an_existing_table() -> None:
    sql = "CREATE TABLE IF NOT EXISTS users (id int);\nDROP TABLE users"
    assert rules_of(sql) == {"SO101"}
    # With a catalog that does not list the table, it really is new.
    facts = {"patients": {"id": "bigint"}}
    assert rules_of(sql, columns=facts) == set()
    # ...and with one that does, it is the existing table.
    assert rules_of(sql, columns={"users": {"id": "integer"}}) == {"SO101"}


def test_a_table_dropped_then_recreated_in_the_plan_is_new() -> None:
    sql = "DROP TABLE cache;\nCREATE TABLE cache (k text);\nTRUNCATE cache"
    assert destructive(sql) == [("SO101", "drops table cache and all its rows")]


def test_destructive_rules_do_not_depend_on_the_server_version() -> None:
    for version in (None, 110000, 170000):
        assert rules_of("DROP TABLE users", server_version=version) == {"SO101"}
        assert rules_of("DELETE FROM sessions", server_version=version) == {"SO111"}


# -- DO blocks and EXECUTE strings ---------------------------------------------------------

_INNER = [
    ("DROP TABLE tmp_import", "SO101"),
    ("ALTER TABLE users DROP COLUMN bio", "SO102"),
    ("DROP SCHEMA archive CASCADE", "SO103"),
    ("DROP TYPE mood", "SO105"),
    ("DROP SEQUENCE invoice_seq", "SO106"),
    ("DROP EXTENSION hstore", "SO107"),
    ("DROP OWNED BY app_old", "SO108"),
    ("TRUNCATE orders", "SO109"),
    ("TRUNCATE orders CASCADE", "SO110"),
    ("DELETE FROM sessions", "SO111"),
    ("UPDATE users SET status = NULL", "SO112"),
    ("MERGE INTO prices p USING staged s ON p.id = s.id WHEN MATCHED THEN DELETE", "SO113"),
    ("ALTER TABLE sessions SET UNLOGGED", "SO115"),
]


@pytest.mark.parametrize(("inner", "rule"), _INNER, ids=[r for _, r in _INNER])
def test_statements_in_a_do_block_are_judged(inner: str, rule: str) -> None:
    sql = (
        "DO $$\nBEGIN\n  IF EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'x') THEN\n"
        f"    {inner};\n  END IF;\nEND\n$$"
    )
    messages = [m for r, m in destructive(sql) if r == rule]
    assert messages, f"{rule} did not fire inside a DO block"
    assert all(m.startswith("DO block, line ") for m in messages), messages


@pytest.mark.parametrize(("inner", "rule"), _INNER, ids=[r for _, r in _INNER])
def test_statements_in_an_execute_string_are_judged(inner: str, rule: str) -> None:
    quoted = inner.replace("'", "''")
    sql = f"DO $$ BEGIN EXECUTE '{quoted}'; END $$"
    messages = [m for r, m in destructive(sql) if r == rule]
    assert messages, f"{rule} did not fire inside EXECUTE"
    assert all(m.startswith("EXECUTE string, line ") for m in messages), messages


def test_a_do_block_that_creates_then_drops_its_table_is_no_data_loss() -> None:
    sql = "DO $$ BEGIN CREATE TABLE tmp (id int); DROP TABLE tmp; END $$"
    assert destructive(sql) == []


def test_a_do_block_that_only_mentions_a_drop_in_a_string_is_quiet() -> None:
    sql = "DO $$ BEGIN RAISE NOTICE 'DROP TABLE users'; END $$"
    assert destructive(sql) == []


# -- statements sqlglot cannot parse --------------------------------------------------------


def test_unparseable_drops_are_still_read_from_their_tokens() -> None:
    found = findings("DROP TYPE IF EXISTS mood, public.weather CASCADE")
    rules = [r for r, _ in found]
    assert "SO001" in rules  # unanalysable, and also what it destroys:
    assert [m for r, m in found if r == "SO105"] == [
        "drops type mood and every column declared with it, with its data (CASCADE)",
        "drops type public.weather and every column declared with it, with its data (CASCADE)",
    ]
    assert rules.count("SO110") == 2
    assert rules_of("DROP SEQUENCE IF EXISTS s1, s2 CASCADE") == {"SO106", "SO110"}
    assert rules_of("drop database if exists analytics with (force)") == {"SO104"}


def test_a_multi_action_alter_sqlglot_cannot_parse_still_shows_its_drop_column() -> None:
    found = findings(
        "ALTER TABLE users DROP COLUMN bio CASCADE, ALTER COLUMN name SET STATISTICS 500"
    )
    assert (
        "SO102",
        "drops column users.bio and its data and what depends on it (CASCADE)",
    ) in found
    assert "SO110" in {r for r, _ in found}


def test_an_unparseable_delete_without_where_is_reported() -> None:
    assert rules_of("DELETE FROM ONLY t * RETURNING garbage ((") == {"SO111"}
    assert rules_of("UPDATE t SET a = 1 WHERE CURRENT OF c garbage ((") == set()


# -- CASCADE -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "reach"),
    [
        ("DROP TABLE users CASCADE", "inherit from it"),
        ("DROP EXTENSION postgis CASCADE", "every column of a type from extension postgis"),
        ("DROP DOMAIN zip CASCADE", "every column declared with domain zip"),
        ("DROP FUNCTION f(int) CASCADE", "generated columns with their data"),
        ("DROP VIEW v CASCADE", "views and materialized views built on view v"),
        ("DROP COLLATION german CASCADE", "collation german"),
        ("DROP OWNED BY app_old CASCADE", "role app_old owns"),
        ("DROP SERVER legacy CASCADE", "server legacy"),
        ("ALTER TABLE users DROP COLUMN email CASCADE", "column users.email"),
    ],
)
def test_cascade_says_what_it_reaches(sql: str, reach: str) -> None:
    messages = [m for r, m in destructive(sql) if r == "SO110"]
    assert messages and reach in messages[0], messages


def test_truncate_cascade_is_reported_even_for_a_table_created_in_the_plan() -> None:
    # Existing tables may have been given a foreign key to the new one: CASCADE empties them.
    sql = "CREATE TABLE parents (id int PRIMARY KEY);\nTRUNCATE parents CASCADE"
    assert rules_of(sql) == {"SO110"}


# -- DELETE / UPDATE -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "WITH moved AS (DELETE FROM events RETURNING *)"
        " INSERT INTO events_archive SELECT * FROM moved",
        "WITH gone AS (DELETE FROM events WHERE true RETURNING id) SELECT count(*) FROM gone",
        "DELETE FROM events WHERE NOT (1 > 2)",
        "DELETE FROM events WHERE created_at < now() OR 'a' = 'a'",
        "DELETE FROM events WHERE 'yes'::boolean",
    ],
)
def test_unbounded_deletes_anywhere_in_the_statement(sql: str) -> None:
    assert rules_of(sql) == {"SO111"}


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM events e USING events_archive a WHERE a.id = e.id",
        "DELETE FROM events WHERE created_at < now() AND true",
        "DELETE FROM events WHERE id = ANY($1)",
        "DELETE FROM events WHERE NULL",
        "DELETE FROM events WHERE x = x",
        "UPDATE alembic_version SET version_num='3c4d5e6f7a8b'"
        " WHERE alembic_version.version_num = '2b3c4d5e6f7a'",
        "INSERT INTO users (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET seen = true",
        "MERGE INTO users u USING staged s ON u.id = s.id WHEN MATCHED THEN UPDATE SET seen = true",
        "WITH recent AS (SELECT * FROM events WHERE true) SELECT * FROM recent",
    ],
)
def test_bounded_or_harmless_dml_is_quiet(sql: str) -> None:
    assert rules_of(sql) == set()


def test_the_alembic_upgrade_script_reports_only_the_drop_column() -> None:
    sql = """BEGIN;

-- Running upgrade 2b3c4d5e6f7a -> 3c4d5e6f7a8b

ALTER TABLE users DROP COLUMN bio;

UPDATE alembic_version SET version_num='3c4d5e6f7a8b'
    WHERE alembic_version.version_num = '2b3c4d5e6f7a';

COMMIT;"""
    assert destructive(sql) == [("SO102", "drops column users.bio and its data")]


# -- the always-true folder -------------------------------------------------------------------


def _where(condition: str) -> exp.Expression:
    where = sqlglot.parse_one(f"SELECT 1 FROM t WHERE {condition}", read="postgres").args["where"]
    assert isinstance(where, exp.Where) and isinstance(where.this, exp.Expression)
    condition_node: exp.Expression = where.this
    return condition_node


@pytest.mark.parametrize(
    "condition",
    [
        "true",
        "TRUE",
        "(true)",
        "1 = 1",
        "'a' = 'a'",
        "1 <> 2",
        "1 != 2",
        "-1 < 0",
        "1.0 = 1",
        "2 >= 2",
        "x OR true",
        "true OR x",
        "NOT false",
        "NOT (1 = 2)",
        "true AND 1 = 1",
        "NULL IS NULL",
        "1 IS NOT NULL",
        "true IS TRUE",
        "NULL IS NOT TRUE",
        "'a' IS DISTINCT FROM 'b'",
        "NULL IS NOT DISTINCT FROM NULL",
        "2 IN (1, 2)",
        "2 BETWEEN 1 AND 3",
        "'t'",
        "'on'::boolean",
        "CAST(1 AS boolean)",
        "(x > 3) OR (1 = 1)",
    ],
)
def test_always_true(condition: str) -> None:
    assert always_true(_where(condition)), condition


@pytest.mark.parametrize(
    "condition",
    [
        "false",
        "x",
        "x = x",
        "x OR false",
        "x AND true",
        "1 = 2",
        "'a' = 'b'",
        "'b' > 'a'",  # collation-dependent: never folded
        "1 = '1'",  # coercion: not folded
        "NULL",
        "NULL = NULL",
        "NOT NULL",
        "NULL OR false",
        "x IS NULL",
        "x IS NOT NULL OR x IS NULL",  # true, but not provably by constant folding
        "3 IN (1, 2)",
        "1 IN (SELECT 1)",
        "random() < 2",
        "now() = now()",
        "'maybe'",
        "CAST(1.5 AS boolean)",
        "2 BETWEEN SYMMETRIC 3 AND 1",
        "$1",
    ],
)
def test_not_provably_true(condition: str) -> None:
    assert not always_true(_where(condition)), condition


def test_always_true_of_nothing_is_false() -> None:
    assert not always_true(None)


# -- lossy type changes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("numeric(10,2)", "integer", "rounds every fractional value"),
        ("numeric", "bigint", "rounds every fractional value"),
        ("double precision", "integer", "rounds every fractional value"),
        ("numeric(10,4)", "numeric(10,2)", "to 2 decimal places"),
        ("real", "numeric(8,1)", "to 1 decimal places"),
        ("double precision", "real", "about 6 significant digits"),
        ("bigint", "double precision", "about 15 significant digits"),
        ("numeric(20,2)", "float8", "about 15 significant digits"),
        ("timestamp", "date", "drops the time of day"),
        ("timestamptz", "time", "drops the date"),
        ("timestamp(6)", "timestamp(0)", "fractional seconds to 0 digits"),
    ],
)
def test_lossy_type_changes_with_a_known_previous_type(old: str, new: str, reason: str) -> None:
    sql = f"ALTER TABLE m ALTER COLUMN v TYPE {new}"
    messages = [m for r, m in destructive(sql, columns={"m": {"v": old}}) if r == "SO114"]
    assert messages and reason in messages[0], messages
    assert messages[0].startswith("changes m.v from ")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("integer", "bigint"),
        ("smallint", "real"),
        ("integer", "numeric(12,0)"),
        ("numeric(10,2)", "numeric(12,2)"),
        ("numeric(10,2)", "numeric"),
        ("real", "double precision"),
        ("date", "timestamptz"),
        ("timestamp", "timestamptz"),
        ("timestamp(0)", "timestamp(3)"),
        ("varchar(50)", "varchar(10)"),  # fails on a longer value rather than truncating it
        ("text", "integer"),  # fails on a non-number rather than losing it
    ],
)
def test_type_changes_that_keep_or_refuse(old: str, new: str) -> None:
    sql = f"ALTER TABLE m ALTER COLUMN v TYPE {new}"
    assert "SO114" not in rules_of(sql, columns={"m": {"v": old}})


def test_lossy_type_change_without_a_catalog_judges_only_the_using_clause() -> None:
    assert rules_of("ALTER TABLE m ALTER COLUMN v TYPE integer") == set()
    assert rules_of("ALTER TABLE m ALTER COLUMN v TYPE integer USING 0") == {"SO114"}
    assert rules_of("ALTER TABLE m ALTER COLUMN v TYPE text USING other_column") == {"SO114"}
    assert rules_of("ALTER TABLE m ALTER COLUMN v TYPE char(2) USING v::char(2)") == {"SO114"}
    assert rules_of("ALTER TABLE m ALTER COLUMN v TYPE integer USING v::numeric(6,2)::integer") == {
        "SO114"
    }
    assert rules_of("ALTER TABLE m ALTER COLUMN v TYPE integer USING v::integer") == set()
    assert rules_of("ALTER TABLE m ALTER COLUMN v TYPE integer USING length(v)") == set()


def test_lossy_type_change_follows_types_set_earlier_in_the_plan() -> None:
    sql = (
        "ALTER TABLE m ALTER COLUMN v TYPE numeric(10,3);\n"
        "ALTER TABLE m ALTER COLUMN v TYPE numeric(10,1)"
    )
    found = destructive(sql, columns={"m": {"v": "numeric(10,3)"}})
    assert found == [
        (
            "SO114",
            "changes m.v from DECIMAL(10, 3) to DECIMAL(10, 1):"
            " rounds every value to 1 decimal places",
        )
    ]


# -- speed -----------------------------------------------------------------------------------------


def test_destructive_checks_are_fast_on_ten_thousand_statements() -> None:
    sql = ";\n".join(
        [
            "ALTER TABLE users ADD COLUMN c{} int",
            "CREATE INDEX CONCURRENTLY i{} ON users (id)",
            "INSERT INTO t (a, b) VALUES ({}, 'x'), (2, 'y'), (3, 'z')",
            "UPDATE users SET a = {} WHERE id = 1",
            "SELECT * FROM users WHERE id = {}",
        ][i % 5].format(i)
        for i in range(10_000)
    )
    views = [view_of(raw) for raw in split_statements(sql)]
    assert len(views) == 10_000
    rules = [r for r in catalogue().values() if r.id in DESTRUCTIVE_IDS]
    context = Context(server_version=150000, schema=SchemaState())
    start = time.perf_counter()
    for view in views:
        for rule in rules:
            for _ in rule.check(view, context):
                pass
    elapsed = time.perf_counter() - start
    assert elapsed < 0.25, f"destructive checks took {elapsed:.3f}s for 10,000 statements"
