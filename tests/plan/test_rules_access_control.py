"""The HIPAA access-control and integrity family (issue 10): grants that widen who reads
PHI, switched-off controls (RLS, triggers, event triggers, audit logging, the guard's
schema), privilege escalation. Needs approval by default; routine look-alikes stay
quiet."""

from __future__ import annotations

import tomllib

import pytest

from runner.config import parse_settings
from runner.gateway.config import DEFAULT_ROLE_VERDICTS
from runner.gateway.model import Verdict
from runner.plan.build import lint_text
from runner.plan.model import Category, Decision, Finding
from runner.plan.policy import DEFAULT_DECISIONS, Policy
from runner.plan.rules import catalogue

PG15 = Policy(server_version=150000)


def findings(sql: str, policy: Policy = PG15) -> list[Finding]:
    return [f for _, f in lint_text(sql, "m.sql", policy=policy).findings]


FLAGGED = [
    ("GRANT SELECT ON patients TO PUBLIC", "SO501"),
    ("GRANT SELECT ON TABLE patients, visits TO app, PUBLIC", "SO501"),
    ('GRANT ALL PRIVILEGES ON patients TO "public"', "SO501"),
    ("GRANT SELECT ON ALL TABLES IN SCHEMA ehr TO PUBLIC", "SO501"),
    ("GRANT USAGE ON SCHEMA public TO PUBLIC", "SO501"),
    ("GRANT clinician TO PUBLIC", "SO501"),
    ("GRANT SELECT ON patients TO app WITH GRANT OPTION", "SO502"),
    ("GRANT admin TO bob WITH ADMIN OPTION", "SO502"),
    ("GRANT CREATE ON SCHEMA public TO PUBLIC", "SO503"),
    ("GRANT CREATE ON SCHEMA ehr TO app", "SO503"),
    ("ALTER TABLE patients DISABLE ROW LEVEL SECURITY", "SO504"),
    ("ALTER TABLE patients NO FORCE ROW LEVEL SECURITY", "SO504"),
    ("DROP POLICY by_clinic ON patients", "SO317"),
    ("CREATE POLICY all_rows ON patients USING (true)", "SO505"),
    ("CREATE POLICY all_rows ON patients FOR SELECT TO PUBLIC USING ('t'::boolean)", "SO505"),
    ("ALTER POLICY by_clinic ON patients USING (true) WITH CHECK (true)", "SO505"),
    ("ALTER TABLE patients DISABLE TRIGGER ALL", "SO506"),
    ("ALTER TABLE patients DISABLE TRIGGER USER", "SO506"),
    ("ALTER TABLE patients DISABLE TRIGGER audit_patients", "SO506"),
    ("ALTER ROLE app SUPERUSER", "SO507"),
    ("ALTER ROLE app WITH BYPASSRLS", "SO507"),
    ("ALTER USER app CREATEROLE", "SO507"),
    ("CREATE ROLE root SUPERUSER LOGIN", "SO507"),
    ("CREATE USER x WITH BYPASSRLS PASSWORD 'p'", "SO507"),
    ("ALTER TABLE patients OWNER TO app", "SO508"),
    ("ALTER SCHEMA ehr OWNER TO app", "SO508"),
    ("ALTER DEFAULT PRIVILEGES IN SCHEMA ehr GRANT SELECT ON TABLES TO PUBLIC", "SO509"),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql SECURITY DEFINER"
        " AS $$ BEGIN RETURN 1; END $$",
        "SO510",
    ),
    ("ALTER EVENT TRIGGER signoff_guard_ddl DISABLE", "SO511"),
    ("DROP EVENT TRIGGER signoff_guard_ddl", "SO511"),
    ("DROP FUNCTION signoff_guard.check_ddl()", "SO512"),
    ("ALTER SCHEMA signoff_guard RENAME TO x", "SO512"),
    ("SELECT signoff_guard.mark(pg_backend_pid(), 'n', 'h')", "SO512"),
    ("SET search_path TO 'signoff_guard'", "SO512"),
    ("ALTER SYSTEM SET log_statement = 'none'", "SO513"),
    ("SET log_statement = 'none'", "SO513"),
    ("SET pgaudit.log = 'none'", "SO513"),
    ("ALTER ROLE app SET pgaudit.log = '-all'", "SO513"),
    ("GRANT pg_read_all_data TO reporting", "SO514"),
    ("GRANT pg_write_server_files TO app", "SO514"),
    ("SET ROLE postgres", "SO515"),
    ("CREATE ROLE backdoor LOGIN PASSWORD 'hunter2'", "SO517"),
    ("ALTER ROLE app PASSWORD 'known'", "SO517"),
    ("SET SESSION AUTHORIZATION postgres", "SO515"),
    ("CREATE PUBLICATION everything FOR ALL TABLES", "SO516"),
    ("ALTER PUBLICATION feed ADD TABLE patients", "SO516"),
    ("DO $$ BEGIN EXECUTE 'GRANT SELECT ON patients TO PUBLIC'; END $$", "SO501"),
    ('GRANT SELECT ON patients TO U&"\\0070ublic"', "SO501"),
    ('SELECT U&"signoff\\005fguard".mark(1)', "SO512"),
    ("CREATE PROCEDURE p() LANGUAGE sql SET pgaudit.log = 'none' AS $$ SELECT 1 $$", "SO513"),
]


@pytest.mark.parametrize(("sql", "rule"), FLAGGED, ids=[s for s, _ in FLAGGED])
def test_access_control_change_needs_approval(sql: str, rule: str) -> None:
    found = findings(sql)
    hits = [f for f in found if f.rule == rule]
    assert hits, (sql, [(f.rule, f.message) for f in found])
    for hit in hits:
        assert hit.category is Category.ACCESS_CONTROL
        assert hit.decision is Decision.NEEDS_APPROVAL


ROUTINE = [
    "GRANT SELECT ON patients TO clinician_app",
    "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA ehr TO app",
    "GRANT USAGE ON SCHEMA ehr TO app",
    "GRANT clinician TO dr_house",
    "REVOKE ALL ON patients FROM PUBLIC",
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    "CREATE POLICY by_clinic ON patients USING (clinic_id = current_setting('app.clinic')::int)",
    "CREATE POLICY mine ON notes FOR ALL TO app USING (author = current_user)"
    " WITH CHECK (author = current_user)",
    "CREATE POLICY only_open ON patients AS RESTRICTIVE USING (true)",
    "COMMENT ON TABLE patients IS 'PHI: GRANT nothing TO PUBLIC'",
    "COMMENT ON POLICY by_clinic ON patients IS 'USING (true) is forbidden'",
    "ALTER TABLE patients ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE patients FORCE ROW LEVEL SECURITY",
    "ALTER TABLE patients ENABLE TRIGGER audit_patients",
    "ALTER TABLE patients ENABLE ALWAYS TRIGGER audit_patients",
    "ALTER ROLE app NOSUPERUSER NOBYPASSRLS NOCREATEROLE",
    "ALTER ROLE app SET search_path = ehr, public",
    "CREATE ROLE reporting NOLOGIN",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA ehr GRANT SELECT ON TABLES TO reporting",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER"
    " SET search_path = ehr, pg_temp AS $$ SELECT 1 $$",
    "CREATE FUNCTION g() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "ALTER EVENT TRIGGER audit_ddl ENABLE",
    "SET log_statement = 'all'",
    "SET application_name = 'migrate'",
    "SELECT 'signoff_guard is installed'",
    "ALTER SEQUENCE patients_id_seq OWNED BY NONE",
    "ALTER SEQUENCE patients_id_seq OWNED BY patients.id",
    "SELECT * FROM patients WHERE owner = 'x'",
    "RESET ROLE",
    "SET ROLE NONE",
    "ALTER PUBLICATION feed DROP TABLE patients",
]


@pytest.mark.parametrize("sql", ROUTINE, ids=range(len(ROUTINE)))
def test_routine_look_alikes_stay_quiet(sql: str) -> None:
    found = findings(sql)
    assert not [f for f in found if f.category is Category.ACCESS_CONTROL], (
        sql,
        [(f.rule, f.message) for f in found],
    )


def test_every_access_control_rule_has_a_case_here() -> None:
    ids = {r.id for r in catalogue().values() if r.category is Category.ACCESS_CONTROL}
    assert ids == {rule for _, rule in FLAGGED}


def test_defaults_need_approval_in_the_planner_and_the_gateway() -> None:
    assert DEFAULT_DECISIONS[Category.ACCESS_CONTROL] is Decision.NEEDS_APPROVAL
    assert DEFAULT_ROLE_VERDICTS[Category.ACCESS_CONTROL] is Verdict.NEEDS_APPROVAL
    assert not PG15.may_allow_inline(Category.ACCESS_CONTROL)


def test_an_inline_allow_does_not_waive_an_access_control_finding() -> None:
    sql = "-- signoff: allow SO501 because the table is public data\nGRANT SELECT ON t TO PUBLIC"
    (hit,) = [f for f in findings(sql) if f.rule == "SO501"]
    assert hit.decision is Decision.NEEDS_APPROVAL


def test_signoff_toml_accepts_the_category() -> None:
    settings = parse_settings(tomllib.loads('[decisions]\naccess-control = "deny"\n'), where="t")
    (hit,) = [
        f for f in findings("GRANT SELECT ON t TO PUBLIC", settings.policy) if f.rule == "SO501"
    ]
    assert hit.decision is Decision.DENY


def test_messages_name_what_is_exposed() -> None:
    (message,) = [
        f.message
        for f in findings("GRANT SELECT ON ALL TABLES IN SCHEMA ehr TO PUBLIC")
        if f.rule == "SO501"
    ]
    assert "all tables in schema ehr" in message and "PUBLIC" in message
    (message,) = [
        f.message
        for f in findings("CREATE POLICY p ON patients USING (1 = 1)")
        if f.rule == "SO505"
    ]
    assert "policy p on patients" in message


def test_a_policy_condition_that_cannot_be_read_is_reported() -> None:
    found = findings("CREATE POLICY p ON patients USING (")
    assert any(f.category is not Category.HYGIENE for f in found)
