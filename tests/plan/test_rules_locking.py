"""The locking rules (SO201-SO226): behaviour their own examples cannot express.

Which type changes rewrite (checked against a real PostgreSQL too), state
carried across statements (tables created earlier, NOT VALID constraints,
transactions), server-version dependence, DO blocks, message text, the
labelled corpus, and the cost of the checks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runner.plan.analyse import view_of
from runner.plan.build import ServerFacts, lint_text
from runner.plan.model import Category, Decision, Finding
from runner.plan.policy import Policy
from runner.plan.rules import catalogue
from runner.plan.rules.base import Context
from runner.plan.schema import SchemaState
from runner.plan.statements import split_statements

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "lint_examples.json"
CORPUS_FACTS = {
    "users": {"nickname": "character varying(50)"},
    "logs": {"created_at": "timestamp without time zone"},
}
LOCKING_IDS = {rule.id for rule in catalogue().values() if rule.category is Category.LOCKING}
UNKNOWN = None  # a server version nobody told the analysis


def lint(
    sql: str,
    *,
    server_version: int | None = 150000,
    columns: dict[str, dict[str, str]] | None = None,
) -> list[Finding]:
    facts = ServerFacts(columns=columns) if columns else None
    plan = lint_text(sql, policy=Policy(server_version=server_version), facts=facts)
    return [finding for _, finding in plan.findings]


def locking(sql: str, **kwargs: Any) -> list[tuple[str, str]]:
    return [(f.rule, f.message) for f in lint(sql, **kwargs) if f.rule in LOCKING_IDS]


def rules_of(sql: str, **kwargs: Any) -> set[str]:
    return {rule for rule, _ in locking(sql, **kwargs)}


# -- SO207: which type changes rewrite ------------------------------------------------

# (type as the catalog's format_type() reports it, new type as a migration writes it)
NO_REWRITE = [
    ("character varying(10)", "varchar(20)"),
    ("character varying(10)", "varchar(10)"),
    ("character varying(10)", "varchar"),
    ("character varying(10)", "text"),
    ("character varying", "text"),
    ("text", "varchar"),
    ("text", "character varying"),
    ("numeric(10,2)", "numeric(12,2)"),
    ("numeric(10,2)", "decimal(12,2)"),
    ("numeric(10,2)", "numeric"),
    ("numeric(10,0)", "numeric(12)"),
    ("cidr", "inet"),
    ("bit varying(5)", "bit varying(10)"),
    ("bit varying(5)", "varbit"),
    ("timestamp(3) without time zone", "timestamp"),
    ("timestamp(3) with time zone", "timestamptz(6)"),
    ("time(3) without time zone", "time"),
    ("interval(3)", "interval"),
    ("xml", "text"),
    ("text", "citext"),
    ("citext", "text"),
    ("integer", "int4"),
    ("double precision", "float8"),
]
REWRITE = [
    ("integer", "bigint"),
    ("bigint", "integer"),
    ("smallint", "integer"),
    ("text", "varchar(10)"),
    ("character varying(50)", "varchar(5)"),
    ("character varying", "varchar(10)"),
    ("numeric(10,2)", "numeric(12,3)"),
    ("numeric(10,2)", "numeric(8,2)"),
    ("numeric", "numeric(10,2)"),
    ("inet", "cidr"),
    ("bit(5)", "bit(10)"),
    ("bit varying", "varbit(5)"),
    ("character(5)", "varchar(10)"),
    ("character(5)", "text"),
    ("timestamp(6) without time zone", "timestamp(3)"),
    ("interval(6)", "interval(3)"),
    ("timestamp without time zone", "timestamptz"),
    ("timestamp with time zone", "timestamp"),
    ("json", "jsonb"),
    ("text", "xml"),
    ("character varying(10)[]", "varchar(20)[]"),
    ("integer[]", "bigint[]"),
    ("citext", "varchar(10)"),
    ("mood", "text"),
]


@pytest.mark.parametrize(("old", "new"), NO_REWRITE)
def test_binary_coercible_type_changes_are_quiet(old: str, new: str) -> None:
    sql = f"ALTER TABLE t ALTER COLUMN c TYPE {new}"
    assert "SO207" not in rules_of(sql, columns={"t": {"c": old}})


@pytest.mark.parametrize(("old", "new"), REWRITE)
def test_rewriting_type_changes_are_reported(old: str, new: str) -> None:
    sql = f"ALTER TABLE t ALTER COLUMN c TYPE {new}"
    assert "SO207" in rules_of(sql, columns={"t": {"c": old}})


def test_type_change_messages_name_the_column_and_both_types() -> None:
    found = locking(
        "ALTER TABLE users ALTER COLUMN nickname TYPE varchar(5)",
        columns={"users": {"nickname": "character varying(50)"}},
    )
    assert found == [
        (
            "SO207",
            "changes users.nickname from varchar(50) to varchar(5): rewrites users and "
            "rebuilds its indexes under ACCESS EXCLUSIVE",
        )
    ]
    (_, message), *_ = locking(
        "ALTER TABLE logs ALTER COLUMN created_at TYPE timestamptz",
        columns={"logs": {"created_at": "timestamp without time zone"}},
    )
    assert "TimeZone is UTC" in message


def test_unknown_previous_type_assumes_a_rewrite_and_says_so() -> None:
    (rule, message), *_ = locking("ALTER TABLE users ALTER COLUMN nickname TYPE text")
    assert rule == "SO207"
    assert "previous type unknown" in message and "--database-url" in message


def test_using_expression_is_a_rewrite_but_using_the_column_itself_is_not() -> None:
    columns = {"users": {"nickname": "character varying(50)"}}
    assert "SO207" in rules_of(
        "ALTER TABLE users ALTER COLUMN nickname TYPE text USING lower(nickname)", columns=columns
    )
    assert "SO207" not in rules_of(
        "ALTER TABLE users ALTER COLUMN nickname TYPE text USING nickname", columns=columns
    )


def test_previous_type_follows_the_plan() -> None:
    # The catalog says varchar(50); the plan widens it to text, then narrows it again.
    columns = {"users": {"nickname": "character varying(50)"}}
    sql = (
        "ALTER TABLE users ALTER COLUMN nickname TYPE text;\n"
        "ALTER TABLE users ALTER COLUMN nickname TYPE varchar(80)"
    )
    plan = lint_text(sql, policy=Policy(server_version=150000), facts=ServerFacts(columns=columns))
    per_statement = [{f.rule for f in s.findings} & LOCKING_IDS for s in plan.statements]
    assert per_statement == [set(), {"SO207"}]


def test_type_sqlglot_cannot_parse_is_read_from_tokens() -> None:
    # sqlglot gives up on "bit varying" inside ALTER TABLE; the token classifier reads it.
    columns = {"flags": {"bits": "bit varying(8)"}}
    assert rules_of("ALTER TABLE flags ALTER COLUMN bits TYPE bit varying(4)", columns=columns) == {
        "SO207"
    }
    assert not rules_of("ALTER TABLE flags ALTER COLUMN bits TYPE bit varying(16)", columns=columns)


@pytest.mark.parametrize("sql", ["ALTER TABLE t ALTER COLUMN c TYPE bigint", "SELECT 1"])
def test_type_change_rule_is_quiet_for_tables_created_in_the_plan(sql: str) -> None:
    assert not rules_of("CREATE TABLE t (c integer);\n" + sql)


def test_type_change_table_matches_a_real_postgresql(scratch_db_url: str) -> None:
    """Each pair above, run for real: the table's file changes exactly when SO207 speaks."""
    mismatches = []
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")
        conn.execute("CREATE TYPE mood AS ENUM ('ok')")
        has_citext = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'citext'"
        ).fetchone()
        if has_citext:
            conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
        for old, new in NO_REWRITE + REWRITE:
            if "citext" in (old, new) and not has_citext:
                continue
            conn.execute("DROP TABLE IF EXISTS t")
            conn.execute(f"CREATE TABLE t (c {old})")
            conn.execute("INSERT INTO t DEFAULT VALUES")
            (catalog_type,) = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 't'::regclass AND attname = 'c'"
            ).fetchone() or ("?",)
            before = conn.execute("SELECT pg_relation_filenode('t')").fetchone()
            using = " USING c::text::xml" if new == "xml" else ""
            conn.execute(f"ALTER TABLE t ALTER COLUMN c TYPE {new}{using}")
            rewrote = conn.execute("SELECT pg_relation_filenode('t')").fetchone() != before
            sql = f"ALTER TABLE t ALTER COLUMN c TYPE {new}"
            reported = "SO207" in rules_of(sql, columns={"t": {"c": catalog_type}})
            if rewrote != reported:
                mismatches.append((catalog_type, new, rewrote, reported))
    assert mismatches == []


# -- state across statements -------------------------------------------------------------


def test_index_on_a_table_created_earlier_in_the_plan_is_quiet() -> None:
    sql = (
        "CREATE TABLE public.visits (id bigint, patient_id bigint);\n"
        "CREATE INDEX visits_patient ON visits (patient_id);\n"
        "ALTER TABLE visits ADD CONSTRAINT visits_patient_fk FOREIGN KEY (patient_id) "
        "REFERENCES patients (id);\n"
        "ALTER TABLE visits ALTER COLUMN patient_id SET NOT NULL;\n"
        "ALTER TABLE visits ADD CONSTRAINT visits_pkey PRIMARY KEY (id);\n"
        "ALTER TABLE visits ALTER COLUMN id TYPE numeric;\n"
        "ALTER TABLE visits ADD COLUMN ref uuid DEFAULT gen_random_uuid()"
    )
    assert locking(sql) == []


def test_index_on_an_existing_table_names_index_and_table() -> None:
    assert locking("CREATE INDEX visits_patient ON visits (patient_id)") == [
        (
            "SO201",
            "builds index visits_patient on visits without CONCURRENTLY: SHARE lock blocks "
            "every write to visits until the build ends",
        )
    ]


def test_a_table_dropped_and_recreated_in_the_plan_is_new() -> None:
    sql = (
        "DROP TABLE IF EXISTS scratch;\n"
        "CREATE TABLE scratch (a int);\n"
        "CREATE INDEX s_a ON scratch (a)"
    )
    assert "SO201" not in rules_of(sql)


def test_materialized_view_created_in_the_plan_is_new() -> None:
    sql = (
        "CREATE MATERIALIZED VIEW totals AS SELECT 1 AS id;\n"
        "CREATE UNIQUE INDEX totals_id ON totals (id);\n"
        "REFRESH MATERIALIZED VIEW totals"
    )
    assert rules_of(sql) == set()
    assert rules_of("REFRESH MATERIALIZED VIEW totals") == {"SO220"}


NOT_VALID = (
    "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
    "REFERENCES users (id) NOT VALID;\n"
)
VALIDATE = "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_user_fk;\n"


def test_validate_in_the_same_transaction_is_reported() -> None:
    found = locking("BEGIN;\n" + NOT_VALID + VALIDATE + "COMMIT;")
    assert [rule for rule, _ in found] == ["SO218"]
    assert "orders_user_fk" in found[0][1]


def test_validate_in_a_later_transaction_is_quiet() -> None:
    assert locking("BEGIN;\n" + NOT_VALID + "COMMIT;\nBEGIN;\n" + VALIDATE + "COMMIT;") == []
    assert locking("BEGIN;\n" + NOT_VALID + "ROLLBACK;\nBEGIN;\n" + VALIDATE + "COMMIT;") == []


def test_not_valid_applies_to_the_last_action_only() -> None:
    sql = (
        "ALTER TABLE products ADD CONSTRAINT a_pos CHECK (a > 0), "
        "ADD CONSTRAINT b_pos CHECK (b > 0) NOT VALID"
    )
    found = locking(sql)
    assert [rule for rule, _ in found] == ["SO205"]
    assert "a_pos" in found[0][1]
    # ... so only b_pos counts as added NOT VALID in the transaction.
    txn = "BEGIN;\n" + sql + ";\nALTER TABLE products VALIDATE CONSTRAINT {};\nCOMMIT;"
    assert "SO218" in rules_of(txn.format("b_pos"))
    assert "SO218" not in rules_of(txn.format("a_pos"))


NN_CHECK = "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;\n"
SET_NN = "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n"


def test_set_not_null_after_a_validated_check_is_quiet_from_pg12() -> None:
    sql = NN_CHECK + "ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n" + SET_NN
    assert "SO206" not in rules_of(sql, server_version=120000)
    assert "SO206" in rules_of(sql, server_version=110000)
    assert "SO206" in rules_of(sql, server_version=UNKNOWN)


def test_set_not_null_needs_the_check_validated_and_still_there() -> None:
    assert "SO206" in rules_of(NN_CHECK + SET_NN)  # NOT VALID only: still a scan
    dropped = (
        NN_CHECK
        + "ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n"
        + "ALTER TABLE users DROP CONSTRAINT users_email_nn;\n"
        + SET_NN
    )
    assert "SO206" in rules_of(dropped)
    other_column = NN_CHECK + "ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n"
    assert "SO206" in rules_of(other_column + "ALTER TABLE users ALTER COLUMN phone SET NOT NULL")


def test_a_check_added_valid_counts_as_validated() -> None:
    sql = "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK ((email IS NOT NULL));\n" + SET_NN
    assert rules_of(sql) == {"SO205"}


# -- server version ----------------------------------------------------------------------

SCORE = "ALTER TABLE users ADD COLUMN score integer DEFAULT 0"


@pytest.mark.parametrize(
    ("version", "reported"),
    [(100000, True), (110000, False), (150000, False), (UNKNOWN, True)],
)
def test_constant_default_rewrites_only_before_pg11(version: int | None, reported: bool) -> None:
    assert ("SO208" in rules_of(SCORE, server_version=version)) is reported


@pytest.mark.parametrize("version", [100000, 110000, 150000, UNKNOWN])
def test_volatile_default_rewrites_on_every_version(version: int | None) -> None:
    sql = "ALTER TABLE users ADD COLUMN public_id uuid DEFAULT gen_random_uuid()"
    assert "SO208" in rules_of(sql, server_version=version)


def test_unknown_version_is_said_in_the_message() -> None:
    ((_, message),) = locking(SCORE, server_version=UNKNOWN)
    assert "server version unknown" in message


@pytest.mark.parametrize(
    ("default", "reported"),
    [
        ("now()", False),
        ("current_timestamp", False),
        ("statement_timestamp()", False),
        ("'x'::text", False),
        ("-1", False),
        ("'{}'::jsonb", False),
        ("ARRAY[]::int[]", False),
        ("current_setting('app.tenant')", False),
        ("clock_timestamp()", True),
        ("random()", True),
        ("nextval('seq')", True),
        ("uuid_generate_v4()", True),
        ("timeofday()", True),
        ("(random() * 10)::int", True),
        ("mystery()", True),
    ],
)
def test_default_volatility(default: str, reported: bool) -> None:
    sql = f"ALTER TABLE t ADD COLUMN c text DEFAULT {default}"
    assert ("SO208" in rules_of(sql)) is reported


def test_enum_value_in_a_transaction_depends_on_the_version() -> None:
    sql = "BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nCOMMIT;"
    assert "SO221" in rules_of(sql, server_version=110000)
    assert "SO221" in rules_of(sql, server_version=UNKNOWN)
    assert "SO221" not in rules_of(sql, server_version=120000)
    assert "SO221" not in rules_of("ALTER TYPE mood ADD VALUE 'meh'", server_version=110000)


@pytest.mark.parametrize(
    ("version", "reported"),
    [(140000, True), (140003, True), (140004, False), (139999, False), (150000, False)],
)
def test_pg14_concurrent_index_bug_range(version: int, reported: bool) -> None:
    sql = "CREATE INDEX CONCURRENTLY i ON orders (a)"
    assert ("SO219" in rules_of(sql, server_version=version)) is reported


# -- transactions and CONCURRENTLY -------------------------------------------------------

CONCURRENT = [
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_user_id ON orders (user_id)",
    "DROP INDEX CONCURRENTLY idx_orders_user_id",
    "REINDEX INDEX CONCURRENTLY idx_orders_user_id",
    "ALTER TABLE measurements DETACH PARTITION measurements_2019 CONCURRENTLY",
]


@pytest.mark.parametrize("statement", CONCURRENT)
def test_concurrently_inside_begin_commit_is_denied(statement: str) -> None:
    for opening in ("BEGIN", "START TRANSACTION", "BEGIN ISOLATION LEVEL READ COMMITTED"):
        found = [f for f in lint(f"{opening};\n{statement};\nCOMMIT;") if f.rule == "SO217"]
        assert len(found) == 1, opening
        assert found[0].decision is Decision.DENY
        assert "cannot run inside BEGIN ... COMMIT" in found[0].message


@pytest.mark.parametrize("statement", CONCURRENT)
def test_concurrently_outside_a_transaction_is_quiet(statement: str) -> None:
    assert rules_of("BEGIN;\nSELECT 1;\nCOMMIT;\n" + statement) == set()


def test_concurrently_in_a_do_block_is_denied() -> None:
    sql = "DO $$ BEGIN EXECUTE 'CREATE INDEX CONCURRENTLY i ON orders (a)'; END $$"
    found = [f for f in lint(sql) if f.rule == "SO217"]
    assert len(found) == 1 and found[0].decision is Decision.DENY
    assert found[0].message.startswith("EXECUTE string")


def test_locking_statements_inside_do_blocks_are_seen() -> None:
    sql = (
        "DO $$ BEGIN\n"
        "  CREATE INDEX orders_a ON orders (a);\n"
        "  EXECUTE 'ALTER TABLE orders ALTER COLUMN b SET NOT NULL';\n"
        "END $$"
    )
    assert rules_of(sql) == {"SO201", "SO206"}


# -- the labelled corpus ---------------------------------------------------------------------


def _corpus(label: str) -> list[Any]:
    if not CORPUS.is_file():
        return [pytest.param(None, id="corpus-absent", marks=pytest.mark.skip(f"{CORPUS} absent"))]
    examples = json.loads(CORPUS.read_text(encoding="utf-8"))
    return [pytest.param(e, id=e["id"]) for e in examples if e["expected_category"] == label]


@pytest.mark.parametrize("example", _corpus("locking"))
def test_corpus_locking_examples_get_a_locking_finding(example: dict[str, Any]) -> None:
    assert rules_of(example["sql"], columns=CORPUS_FACTS), example["id"]


@pytest.mark.parametrize("example", _corpus("safe"))
def test_corpus_safe_examples_get_no_locking_finding(example: dict[str, Any]) -> None:
    assert locking(example["sql"], columns=CORPUS_FACTS) == [], example["id"]


def test_l007_constant_default_is_safe_on_pg15() -> None:
    assert locking("ALTER TABLE users ADD COLUMN score integer DEFAULT 0;") == []


# -- cost ------------------------------------------------------------------------------------


def test_locking_checks_are_cheap() -> None:
    """10,000 statements through every locking check, parsing excluded, well under a second."""
    sql = ";\n".join(
        [
            "SELECT * FROM orders WHERE id = 1",
            "INSERT INTO orders (id) VALUES (1)",
            "UPDATE orders SET a = 1 WHERE id = 2",
            "ALTER TABLE users ADD COLUMN bio text",
            "ALTER TABLE users ALTER COLUMN nickname TYPE text",
            "CREATE INDEX CONCURRENTLY i ON orders (a)",
            "ALTER TABLE orders ADD CONSTRAINT c CHECK (a > 0) NOT VALID",
            "VACUUM ANALYZE orders",
            "REINDEX INDEX i",
            "ALTER TABLE m DETACH PARTITION m1",
        ]
    )
    views = [view_of(raw) for raw in split_statements(sql)] * 1000
    rules = [rule for rule in catalogue().values() if rule.id in LOCKING_IDS]
    context = Context(
        server_version=150000,
        schema=SchemaState.from_catalog({"users": {"nickname": "character varying(50)"}}),
    )
    start = time.perf_counter()
    for view in views:
        for rule in rules:
            for _ in rule.check(view, context):
                pass
    assert time.perf_counter() - start < 1.0


def test_create_trigger_takes_share_row_exclusive_on_a_real_postgresql(
    scratch_db_url: str,
) -> None:
    """SO227's premise, checked: the lock a CREATE [OR REPLACE] TRIGGER holds until COMMIT."""
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE trig_target (id int)")
        conn.execute(
            "CREATE FUNCTION trig_fn() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NEW; END $$"
        )
        for verb in ("CREATE", "CREATE OR REPLACE"):
            with conn.transaction():
                conn.execute(
                    f"{verb} TRIGGER trig_t AFTER INSERT ON trig_target "
                    "FOR EACH ROW EXECUTE FUNCTION trig_fn()"
                )
                modes = {
                    row[0]
                    for row in conn.execute(
                        "SELECT mode FROM pg_locks WHERE relation = 'trig_target'::regclass "
                        "AND pid = pg_backend_pid()"
                    )
                }
            assert "ShareRowExclusiveLock" in modes, (verb, modes)
            assert "AccessExclusiveLock" not in modes, (verb, modes)


def test_create_trigger_reports_the_lock_unless_the_plan_created_the_table() -> None:
    sql = (
        "BEGIN;\nCREATE OR REPLACE TRIGGER audit AFTER UPDATE ON public.patients "
        "FOR EACH ROW EXECUTE FUNCTION audit_row();\nCOMMIT;\n"
        "CREATE TRIGGER audit2 AFTER UPDATE ON patients FOR EACH ROW EXECUTE FUNCTION f();\n"
        "CREATE TABLE fresh (id int);\n"
        "CREATE TRIGGER fresh_audit AFTER UPDATE ON fresh FOR EACH ROW EXECUTE FUNCTION f();\n"
    )
    plan = lint_text(sql, policy=Policy(server_version=150000, apply_lock_timeout=False))
    so227 = [(s.index, f) for s, f in plan.findings if f.rule == "SO227"]
    assert [index for index, _ in so227] == [1, 3]
    replaced, created = so227[0][1], so227[1][1]
    assert replaced.message.startswith("replaces trigger audit on public.patients")
    assert "SHARE ROW EXCLUSIVE" in replaced.message and "until COMMIT" in replaced.message
    assert "no lock_timeout" in created.message and "until COMMIT" not in created.message
    assert replaced.category is Category.LOCKING and replaced.decision is Decision.WARN
    # SO401 speaks for the unbounded wait too, but not for the new table's trigger.
    so401 = [s.index for s, f in plan.findings if f.rule == "SO401"]
    assert 3 in so401 and 6 not in so401
