"""Wholesale DML in every form (issue 10): a WHERE that does not narrow, bound parameters,
joins that never name the target, CTE-wrapped changes, upserts and MERGE from a query,
and ALTER COLUMN ... TYPE ... USING that loses the values.

The rules' own examples run in test_rules_catalogue; these are further variants,
each one checked for the rule that must fire and, on the quiet side, for no
destructive finding at all.
"""

from __future__ import annotations

import pytest

from runner.plan.build import lint_text
from runner.plan.model import Category, Decision, Finding
from runner.plan.policy import Policy

PG15 = Policy(server_version=150000)


def findings(sql: str) -> list[Finding]:
    return [f for _, f in lint_text(sql, "m.sql", policy=PG15).findings]


def rules(sql: str) -> set[str]:
    return {f.rule for f in findings(sql)}


# The WHERE clauses the server evaluates true for every row, spelt every way.
WHOLESALE = [
    ("DELETE FROM patients WHERE 1=1", "SO111"),
    ("DELETE FROM patients WHERE true", "SO111"),
    ("DELETE FROM patients WHERE NOT false", "SO111"),
    ("DELETE FROM patients WHERE 'a'='a'", "SO111"),
    ("DELETE FROM patients WHERE id > 0 OR true", "SO111"),
    ("DELETE FROM patients WHERE id = id", "SO121"),
    ("DELETE FROM patients WHERE x IS NOT NULL OR x IS NULL", "SO121"),
    ("DELETE FROM patients WHERE (x IS NULL) OR NOT (x IS NULL)", "SO121"),
    ("DELETE FROM patients WHERE NOT (x IS NULL AND x IS NOT NULL)", "SO121"),
    ("DELETE FROM patients WHERE a < 5 OR a >= 5", "SO121"),
    ("DELETE FROM patients WHERE 5 > a OR a >= 5", "SO121"),
    ("DELETE FROM patients WHERE lower(mrn) = lower(mrn)", "SO121"),
    ("DELETE FROM patients WHERE mrn::text LIKE '%%'", "SO121"),
    ("DELETE FROM patients WHERE $1", "SO121"),
    ("DELETE FROM patients WHERE id = $1 OR $2", "SO121"),
    ("DELETE FROM patients WHERE id = $1 OR $2 IS NOT NULL", "SO121"),
    ("DELETE FROM patients WHERE current_user = 'migrator'", "SO121"),
    ("DELETE FROM patients WHERE now() > '2020-01-01'", "SO121"),
    ("DELETE FROM patients WHERE (SELECT count(*) FROM audit_log) > 0", "SO121"),
    ("DELETE FROM patients WHERE EXISTS (SELECT 1 FROM merged WHERE merged.id = 1)", "SO121"),
    ("UPDATE patients SET mrn = NULL WHERE mrn = mrn", "SO121"),
    ("UPDATE patients SET mrn = NULL WHERE $1::boolean", "SO121"),
    ("UPDATE patients p SET clinic = c.name FROM clinics c WHERE c.open", "SO121"),
    ("DELETE FROM patients p USING clinics c WHERE c.id = $1", "SO121"),
    ("DELETE FROM patients USING clinics", "SO111"),
    ("UPDATE patients SET mrn = 'x' FROM clinics", "SO112"),
    ("WITH d AS (DELETE FROM patients RETURNING *) SELECT count(*) FROM d", "SO111"),
    ("WITH d AS (DELETE FROM patients WHERE id = id RETURNING *) SELECT * FROM d", "SO121"),
    ("WITH u AS (UPDATE patients SET mrn = '' WHERE true RETURNING id) SELECT 1", "SO112"),
    (
        "INSERT INTO patients (id, mrn) SELECT id, 'x' FROM staged"
        " ON CONFLICT (id) DO UPDATE SET mrn = excluded.mrn",
        "SO122",
    ),
    (
        "WITH up AS (INSERT INTO patients SELECT * FROM staged ON CONFLICT (id)"
        " DO UPDATE SET mrn = excluded.mrn RETURNING id) SELECT count(*) FROM up",
        "SO122",
    ),
    (
        "INSERT INTO patients SELECT * FROM staged ON CONFLICT (id)"
        " DO UPDATE SET mrn = excluded.mrn WHERE $1",
        "SO122",
    ),
    (
        "MERGE INTO patients p USING staged s ON 1 = 1 WHEN MATCHED THEN UPDATE SET mrn = s.mrn",
        "SO123",
    ),
    ("MERGE INTO patients p USING staged s ON s.ok WHEN MATCHED THEN UPDATE SET mrn = ''", "SO123"),
    ("MERGE INTO patients p USING staged s ON p.id = s.id WHEN MATCHED THEN DELETE", "SO113"),
    ("ALTER TABLE patients ALTER COLUMN mrn TYPE text USING NULL", "SO114"),
    ("ALTER TABLE patients ALTER COLUMN mrn TYPE text USING 'x'", "SO114"),
    ("ALTER TABLE patients ALTER COLUMN mrn TYPE varchar(3) USING mrn::varchar(3)", "SO114"),
    ("ALTER TABLE patients ALTER COLUMN mrn TYPE text USING left(mrn, 3)", "SO124"),
    ("ALTER TABLE patients ALTER COLUMN mrn TYPE text USING substr(mrn, 2)", "SO124"),
    ("ALTER TABLE patients ALTER COLUMN mrn TYPE text USING substring(mrn from 1 for 2)", "SO124"),
    ("ALTER TABLE patients ALTER COLUMN born TYPE date USING date_trunc('year', born)", "SO124"),
    ("ALTER TABLE patients ALTER COLUMN mrn TYPE text USING split_part(mrn, '-', 1)", "SO124"),
    ("DO $$ BEGIN DELETE FROM patients WHERE x = x; END $$", "SO121"),
]


@pytest.mark.parametrize(("sql", "rule"), WHOLESALE, ids=[s for s, _ in WHOLESALE])
def test_wholesale_change_is_destructive_and_needs_approval(sql: str, rule: str) -> None:
    found = findings(sql)
    assert rule in {f.rule for f in found}, (sql, [(f.rule, f.message) for f in found])
    hit = next(f for f in found if f.rule == rule)
    assert hit.category is Category.DESTRUCTIVE
    assert hit.decision is Decision.NEEDS_APPROVAL


QUIET = [
    "DELETE FROM patients WHERE id = $1",
    "DELETE FROM patients WHERE id = $1 AND $2",
    "DELETE FROM patients WHERE id IN ($1, $2, $3)",
    "DELETE FROM patients WHERE id = ANY($1)",
    "DELETE FROM patients WHERE 1 = 0",
    "DELETE FROM patients WHERE false AND $1",
    "DELETE FROM patients WHERE NULL",
    "DELETE FROM patients WHERE deleted_at IS NOT NULL",
    "DELETE FROM patients WHERE mrn LIKE 'TMP-%'",
    "DELETE FROM patients WHERE id = 1 OR id = 2",
    "DELETE FROM patients WHERE NOT (id = 5)",
    "DELETE FROM patients WHERE id IN (SELECT patient_id FROM merged)",
    "DELETE FROM patients WHERE id IN (SELECT id FROM patients WHERE mrn IS NULL)",
    "DELETE FROM patients p WHERE EXISTS (SELECT 1 FROM merged m WHERE m.old_id = p.id)",
    "DELETE FROM patients p USING merged m WHERE m.old_id = p.id",
    "UPDATE patients AS p SET mrn = s.mrn FROM staged s WHERE s.id = p.id AND s.ok",
    "UPDATE patients SET mrn = upper(mrn) WHERE id BETWEEN 1 AND 1000",
    "WITH d AS (DELETE FROM patients WHERE id = $1 RETURNING *) SELECT * FROM d",
    "INSERT INTO patients (id, mrn) VALUES ($1, $2)"
    " ON CONFLICT (id) DO UPDATE SET mrn = excluded.mrn",
    "INSERT INTO patients (id, mrn) VALUES (1, 'a'), (2, 'b')"
    " ON CONFLICT (id) DO UPDATE SET mrn = excluded.mrn",
    "INSERT INTO patients SELECT * FROM staged ON CONFLICT (id) DO NOTHING",
    "INSERT INTO patients SELECT * FROM staged",
    "INSERT INTO patients SELECT * FROM staged ON CONFLICT (id)"
    " DO UPDATE SET mrn = excluded.mrn WHERE patients.mrn IS NULL",
    "MERGE INTO patients p USING staged s ON p.id = s.id WHEN MATCHED THEN UPDATE SET mrn = s.mrn",
    "MERGE INTO patients p USING staged s ON p.id = s.id WHEN MATCHED AND s.gone THEN DELETE",
    "ALTER TABLE patients ALTER COLUMN mrn TYPE text",
    "ALTER TABLE patients ALTER COLUMN id TYPE bigint USING id::bigint",
    "ALTER TABLE patients ALTER COLUMN mrn TYPE text USING mrn || ''",
    "ALTER TABLE patients ALTER COLUMN born TYPE date USING to_date(born, 'YYYYMMDD')",
    "SELECT * FROM patients WHERE id = id",
    "CREATE TABLE scratch (id int, x int);\nDELETE FROM scratch WHERE x = x",
]


@pytest.mark.parametrize("sql", QUIET, ids=range(len(QUIET)))
def test_narrowed_change_is_not_destructive(sql: str) -> None:
    found = findings(sql)
    assert not [f for f in found if f.category is Category.DESTRUCTIVE], (
        sql,
        [(f.rule, f.message) for f in found],
    )


def test_the_message_says_why_the_where_does_not_narrow() -> None:
    (message,) = [
        f.message for f in findings("DELETE FROM patients WHERE id = $1 OR $2") if f.rule == "SO121"
    ]
    assert "$2" in message and "bound value" in message and "patients" in message
    (message,) = [
        f.message
        for f in findings("DELETE FROM patients WHERE ssn IS NULL OR ssn IS NOT NULL")
        if f.rule == "SO121"
    ]
    assert "holds for every row" in message


def test_a_join_condition_on_the_target_by_a_column_the_catalog_knows() -> None:
    from runner.plan.build import ServerFacts

    facts = ServerFacts(columns={"patients": {"clinic_id": "integer"}})
    sql = "DELETE FROM patients USING clinics c WHERE c.id = clinic_id"
    plan = lint_text(sql, "m.sql", policy=PG15, facts=facts)
    assert "SO121" not in {f.rule for _, f in plan.findings}
    # Without the catalog, an unqualified column in a join may be the other table's.
    assert "SO121" in rules(sql)


def test_wholesale_dml_cannot_be_waived_by_an_inline_allow() -> None:
    sql = "-- signoff: allow SO121 because it is fine\nDELETE FROM patients WHERE id = id"
    (hit,) = [f for f in findings(sql) if f.rule == "SO121"]
    assert hit.decision is Decision.NEEDS_APPROVAL
