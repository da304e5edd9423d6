"""SO3xx: statements that break the previous release during a rolling deploy.

The rules' own examples (tests/plan/test_rules_catalogue.py) say when each fires;
these tests cover what examples cannot: the message names the object, state
carried across statements and revisions, catalog facts, DO blocks and EXECUTE
strings, and what the findings mean for the plan.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from runner.plan.build import ServerFacts, SqlSource, build_plan, lint_text
from runner.plan.model import Category, Decision, Finding
from runner.plan.policy import Policy
from runner.plan.rules import catalogue


def _findings(sql: str, *, columns: Mapping[str, Mapping[str, str]] | None = None) -> list[Finding]:
    facts = ServerFacts(columns=columns) if columns else None
    plan = lint_text(sql, policy=Policy(server_version=150000), facts=facts)
    return [finding for _, finding in plan.findings]


def _messages(
    sql: str, rule: str, *, columns: Mapping[str, Mapping[str, str]] | None = None
) -> list[str]:
    return [f.message for f in _findings(sql, columns=columns) if f.rule == rule]


def test_incompatible_rules_are_catalogued_in_their_range() -> None:
    rules = [r for r in catalogue().values() if r.category is Category.INCOMPATIBLE]
    ids = {r.id for r in rules}
    # SO317 drop-policy kept its id when it became access-control (issue 10).
    assert {f"SO3{n:02d}" for n in range(1, 17)} <= ids
    assert all("SO301" <= r.id <= "SO329" for r in rules)
    names = [r.name for r in rules]
    assert len(names) == len(set(names))


def test_incompatible_findings_warn_and_need_no_approval() -> None:
    plan = lint_text(
        "ALTER TABLE users RENAME COLUMN email TO email_address",
        policy=Policy(server_version=150000),
    )
    (finding,) = [f for _, f in plan.findings]
    assert finding.rule == "SO302"
    assert finding.decision is Decision.WARN
    assert not plan.needs_approval


def test_inline_allow_downgrades_an_incompatible_finding() -> None:
    findings = _findings(
        "-- signoff: allow SO302 because no reader of email is deployed yet\n"
        "ALTER TABLE users RENAME COLUMN email TO email_address"
    )
    (finding,) = findings
    assert finding.rule == "SO302"
    assert finding.decision is Decision.ADVISORY
    assert finding.allowed is not None


# -- messages name the object ------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "rule", "expected"),
    [
        ('ALTER TABLE public."Users" RENAME TO people', "SO301", 'table public."Users" to people'),
        ("ALTER MATERIALIZED VIEW daily RENAME TO totals", "SO301", "materialized view daily"),
        (
            "ALTER TABLE patients RENAME COLUMN dob TO birth_date",
            "SO302",
            "patients.dob to birth_date",
        ),
        ("ALTER TABLE patients RENAME dob TO birth_date", "SO302", "patients.dob to birth_date"),
        ('ALTER TABLE t RENAME COLUMN "DOB" TO dob', "SO302", 't."DOB" to dob'),
        ("ALTER SCHEMA billing RENAME TO invoicing", "SO303", "schema billing to invoicing"),
        ("ALTER TABLE users RENAME CONSTRAINT uq TO users_uq", "SO304", "uq on users to users_uq"),
        ("ALTER TYPE mood RENAME VALUE 'sad' TO 'blue'", "SO305", "'sad' of enum mood to 'blue'"),
        ("ALTER TABLE reports SET SCHEMA archive", "SO306", "table reports to schema archive"),
        ("ALTER VIEW open_claims SET SCHEMA archive", "SO306", "view open_claims"),
        ("DROP MATERIALIZED VIEW reporting.daily", "SO307", "materialized view reporting.daily"),
        ("DROP PROCEDURE archive(int)", "SO308", "procedure archive"),
        ("ALTER TABLE orders DROP CONSTRAINT orders_user_fk", "SO309", "orders_user_fk on orders"),
        ("ALTER TABLE users ALTER COLUMN status DROP DEFAULT", "SO310", "users.status"),
        ("ALTER TABLE users ALTER COLUMN email DROP NOT NULL", "SO311", "users.email"),
        ("ALTER TABLE users ADD COLUMN tenant_id bigint NOT NULL", "SO312", "users.tenant_id"),
        ("REVOKE SELECT ON patients FROM analyst", "SO313", "SELECT on patients from analyst"),
        ("ALTER TYPE mood RENAME TO feeling", "SO314", "type mood to feeling"),
        ("DROP TRIGGER audit_row ON public.patients", "SO315", "audit_row on public.patients"),
        ("DROP POLICY by_clinic ON patients", "SO317", "by_clinic on patients"),
    ],
)
def test_message_names_the_object(sql: str, rule: str, expected: str) -> None:
    messages = _messages(sql, rule)
    assert messages, f"{rule} did not fire on {sql}"
    assert expected in messages[0]


def test_drop_function_reports_every_function_of_a_list() -> None:
    # sqlglot raises on a list of signatures; the token shape still names both.
    messages = _messages("DROP FUNCTION IF EXISTS f(int), billing.g(text, int) CASCADE", "SO308")
    assert len(messages) == 2
    assert "function f:" in messages[0]
    assert "function billing.g:" in messages[1]


def test_cascade_is_mentioned_when_dropping_a_constraint() -> None:
    (message,) = _messages("ALTER TABLE users DROP CONSTRAINT users_pkey CASCADE", "SO309")
    assert "CASCADE" in message


def test_drop_and_readd_under_another_name_is_still_reported() -> None:
    sql = (
        "ALTER TABLE orders DROP CONSTRAINT orders_user_fk, "
        "ADD CONSTRAINT orders_customer_fk FOREIGN KEY (user_id) REFERENCES users (id)"
    )
    assert _messages(sql, "SO309")


# -- objects created earlier in the plan have no old clients -------------------------


def test_table_created_in_an_earlier_revision_is_new() -> None:
    policy = Policy(server_version=150000)
    plan = build_plan(
        [
            SqlSource("revision a", "CREATE TABLE referrals (id bigint, note text);", "a"),
            SqlSource(
                "revision b",
                "ALTER TABLE referrals RENAME COLUMN note TO notes;\n"
                "ALTER TABLE referrals ADD COLUMN status text NOT NULL;\n"
                "ALTER TABLE referrals ALTER COLUMN notes DROP DEFAULT;\n"
                "ALTER TABLE referrals RENAME TO patient_referrals;\n"
                "ALTER TABLE patient_referrals DROP CONSTRAINT IF EXISTS x;",
                "b",
            ),
        ],
        policy=policy,
    )
    assert [f.rule for _, f in plan.findings if f.category is Category.INCOMPATIBLE] == []


def test_table_known_from_the_catalog_is_not_new() -> None:
    columns = {"patients": {"id": "bigint", "dob": "date"}}
    assert _messages(
        "ALTER TABLE patients RENAME COLUMN dob TO birth_date", "SO302", columns=columns
    )
    assert _messages("ALTER TABLE patients ADD COLUMN mrn text NOT NULL", "SO312", columns=columns)


def test_revoke_on_a_table_the_plan_created_is_quiet_but_not_on_others() -> None:
    sql = (
        "CREATE TABLE staging (id bigint);\n"
        "REVOKE ALL ON staging FROM PUBLIC;\n"
        "REVOKE ALL ON patients FROM PUBLIC;"
    )
    messages = _messages(sql, "SO313")
    assert len(messages) == 1
    assert "patients" in messages[0]


# -- DO blocks and EXECUTE strings ---------------------------------------------------


def test_statements_inside_a_do_block_are_judged() -> None:
    sql = (
        "DO $$\nBEGIN\n"
        "  ALTER TABLE users RENAME COLUMN email TO email_address;\n"
        "  EXECUTE 'DROP VIEW active_users';\n"
        "END\n$$;"
    )
    findings = _findings(sql)
    by_rule = {f.rule: f.message for f in findings}
    assert by_rule["SO302"].startswith("DO block, line 3: renames column users.email")
    assert by_rule["SO307"].startswith("EXECUTE string")
    assert "active_users" in by_rule["SO307"]


# -- SO316: the kind of value clients read --------------------------------------------


def test_column_type_change_with_unknown_previous_type_fails_closed() -> None:
    (message,) = _messages("ALTER TABLE orders ALTER COLUMN total TYPE numeric(12, 2)", "SO316")
    assert "previous type unknown" in message
    assert "--database-url" in message


@pytest.mark.parametrize(
    ("old", "new", "fires"),
    [
        ("integer", "bigint", False),
        ("smallint", "integer", False),
        ("character varying(50)", "text", False),
        ("text", "varchar(200)", False),
        ("jsonb", "json", False),
        ("timestamp without time zone", "timestamp(3)", False),
        ("order_status", "public.order_status", False),
        ("text", "citext", False),
        ("integer", "numeric", True),
        ("integer", "text", True),
        ("text", "order_status", True),
        ("timestamp without time zone", "timestamptz", True),
        ("date", "timestamptz", True),
        ("text[]", "text", True),
        ("uuid", "text", True),
    ],
)
def test_column_type_change_between_kinds(old: str, new: str, fires: bool) -> None:
    sql = f"ALTER TABLE orders ALTER COLUMN c TYPE {new}"
    messages = _messages(sql, "SO316", columns={"orders": {"c": old}})
    assert bool(messages) is fires, messages
    if fires:
        assert messages[0].startswith("changes orders.c from ")


def test_column_type_follows_earlier_statements_of_the_plan() -> None:
    sql = (
        "ALTER TABLE orders ALTER COLUMN qty TYPE bigint;\n"
        "ALTER TABLE orders ALTER COLUMN qty TYPE text;"
    )
    messages = _messages(sql, "SO316", columns={"orders": {"qty": "integer"}})
    assert messages == [
        "changes orders.qty from integer to text: clients of the previous release decode "
        "and bind it as integer"
    ]


def test_column_type_is_quiet_after_the_column_was_retyped_compatibly_in_the_plan() -> None:
    sql = "ALTER TABLE t ADD COLUMN c varchar(10);\nALTER TABLE t ALTER COLUMN c TYPE text;"
    assert _messages(sql, "SO316", columns={"t": {"id": "bigint"}}) == []


# -- corpus-style checks of the whole family on safe statements -----------------------


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE users ADD COLUMN bio text",
        "ALTER TABLE users ADD COLUMN score integer NOT NULL DEFAULT 0",
        "CREATE VIEW active_users AS SELECT id FROM users WHERE active",
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        "GRANT SELECT ON patients TO analyst",
        "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' AFTER 'ok'",
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
        "REFERENCES users (id) NOT VALID",
        "ALTER INDEX orders_user_idx RENAME TO orders_user_id_idx",
        "COMMENT ON COLUMN users.email IS 'primary contact'",
    ],
)
def test_safe_statements_are_not_incompatible(sql: str) -> None:
    assert [f for f in _findings(sql) if f.category is Category.INCOMPATIBLE] == []
