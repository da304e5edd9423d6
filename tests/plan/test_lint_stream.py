"""Streamed lint: the same statements, hash and output as the lint that reads the
whole file, whatever size the pieces are read in."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from runner.plan import render
from runner.plan.lint import lint_text
from runner.plan.model import Plan
from runner.plan.policy import Policy
from runner.plan.statements import RawStatement, split_statements
from runner.plan.stream import PlanHasher, lint_stream, read_statements, sink_for

SCRIPTS = {
    "plain": "CREATE TABLE a (id int);\nALTER TABLE a ADD COLUMN b text; -- why\nDROP TABLE a;\n",
    "no final newline or semicolon": "SELECT 1;\nSELECT 2",
    "two on a line": "SELECT 1; SELECT 2;\nSELECT 3; -- three\n\n\n-- lead\nSELECT 4;\n",
    "dollar quote across lines": (
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  PERFORM 1;\n"
        "  RETURN 2;\nEND\n$body$;\nDO $$ BEGIN DROP TABLE x; END $$;\nSELECT 'a;\nb';\n"
    ),
    "block comments": "/* a;\n b; */ SELECT 1;\n/* c */\nSELECT 2 /* d;\n*/;\n",
    "meta-commands": (
        "\\set ON_ERROR_STOP on\nSELECT 1;\n\\connect other\nSELECT 'x\n\\not meta';\n"
        "SELECT count(*) AS n FROM t\n\\gset\n\\echo done \\\\ SELECT 2;\n\\q\n"
    ),
    "only meta-commands": "\\echo one\n\\i two.sql\n",
    "untokenizable tail": "SELECT 1;\nSELECT 2;\nSELECT 'never closed;\nSELECT 3;\n",
    "untokenizable middle": "SELECT 1;\nSELECT 'a;\nSELECT 2;\n';\nSELECT 3;\nSELECT 'b\n",
    "crlf": "SELECT 1;\r\nSELECT 2;\r\n",
}


def _shape(statement: RawStatement) -> tuple[object, ...]:
    return (
        statement.text,
        statement.line,
        statement.end_line,
        statement.token_error is None,
        statement.meta_commands,
        statement.meta_only,
        tuple(statement.comments),
    )


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_read_in_pieces_gives_the_statements_of_the_whole(name: str) -> None:
    sql = SCRIPTS[name]
    whole_text = io.StringIO(sql, newline=None).read()
    whole = [_shape(s) for s in split_statements(whole_text, psql_script=True)]
    assert whole, name
    for chunk in range(1, len(sql) + 2):
        pieces = [_shape(s) for s in read_statements(io.StringIO(sql), chunk_chars=chunk)]
        assert pieces == whole, f"{name}: differs when read {chunk} characters at a time"


def test_random_scripts_read_in_random_pieces() -> None:
    parts = [
        "SELECT 1;\n", "SELECT 'a;b';\n", "SELECT $$x;\ny$$;\n", "-- c;\n", "/* d;\n*/\n",
        "\\set x 1\n", "SELECT 2 -- e\n;\n", "BEGIN; DROP TABLE t; COMMIT;\n", "\n",
        "UPDATE t SET a = 1\n WHERE b;\n",
    ]  # fmt: skip
    rng = random.Random(7)
    for _ in range(60):
        sql = "".join(rng.choice(parts) for _ in range(rng.randint(1, 30)))
        whole = [_shape(s) for s in split_statements(sql, psql_script=True)]
        chunk = rng.randint(1, 40)
        pieces = [_shape(s) for s in read_statements(io.StringIO(sql), chunk_chars=chunk)]
        assert pieces == whole, (sql, chunk)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_streamed_lint_writes_the_same_report_and_hash(name: str, fmt: str) -> None:
    sql = SCRIPTS[name]
    policy = Policy(server_version=150000)
    plan = lint_text(io.StringIO(sql, newline=None).read(), "m.sql", policy=policy)
    out = io.StringIO()
    summary = lint_stream(
        [("m.sql", io.StringIO(sql))], sink_for(fmt, out), policy=policy, chunk_chars=5
    )
    assert summary.hash == plan.hash
    assert summary.statements == len(plan.statements)
    assert summary.needs_approval is plan.needs_approval and summary.denied is plan.denied
    assert out.getvalue() == render.render(plan, fmt, all_statements=False)
    if fmt == "json":
        assert Plan.loads(out.getvalue()).hash == plan.hash


def test_plan_hasher_is_the_plan_hash() -> None:
    plan = lint_text("SELECT 1;\nDROP TABLE é;\n", "x.sql", policy=Policy(target="ehr-ü"))
    hasher = PlanHasher("ehr-ü", plan.ruleset)
    for statement in plan.statements:
        hasher.add(statement.sha256)
    assert hasher.hexdigest() == plan.hash
    assert PlanHasher("t", "r").hexdigest() == Plan("t", "r", (), (), plan.basis).hash


def test_json_of_an_empty_script_is_the_plan_of_nothing() -> None:
    out = io.StringIO()
    lint_stream([("e.sql", io.StringIO("-- nothing\n"))], sink_for("json", out), policy=Policy())
    assert out.getvalue() == lint_text("-- nothing\n", "e.sql").dumps()
    assert json.loads(out.getvalue())["statements"] == []


_MEASURE = """
import resource, sys
from runner.plan.stream import lint_stream, sink_for
from runner.plan.policy import Policy

class Null:
    def write(self, text): return len(text)

with open(sys.argv[1]) as f:
    lint_stream([(sys.argv[1], f)], sink_for(sys.argv[2], Null()), policy=Policy(),
                chunk_chars=1 << 16)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Peak memory of a streamed lint of a file 4x larger stays about the same
    (a whole-file lint grows by hundreds of bytes per statement)."""
    block = "".join(
        f"ALTER TABLE t{i} ADD COLUMN c{i} text;\nUPDATE t{i} SET c{i} = 'x' WHERE id = {i};\n"
        for i in range(2000)
    )
    peaks = []
    for copies in (2, 8):
        path = tmp_path / f"big{copies}.sql"
        path.write_text(block * copies)
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(path), "json"],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks.append(int(done.stdout.strip()))
    small, large = peaks
    # 24,000 more statements; a whole-file lint holds several kB for each.
    assert large - small < 40_000, f"peak RSS grew from {small} kB to {large} kB"


def test_a_repeated_statement_is_parsed_once_but_judged_in_its_context() -> None:
    from runner.plan.analyse import Analysis
    from runner.plan.schema import SchemaState

    sql = (
        "ALTER TABLE t ADD COLUMN a int NOT NULL DEFAULT 0;\nCREATE TABLE t (id int);\n"
        "ALTER TABLE t ADD COLUMN a int NOT NULL DEFAULT 0;\n"
    )
    analysis = Analysis(Policy(), server_version=100000, schema=SchemaState(), reuse_parses=True)
    first, create, again = split_statements(sql, psql_script=True)
    seen = analysis.analyse_one(first), analysis.analyse_one(create), analysis.analyse_one(again)
    assert "SO208" in {f.rule for f in seen[0].findings}  # a rewrite on PostgreSQL 10
    assert seen[2].findings == ()  # the same text on the table the plan created
    assert list(analysis._parsed) == [first.text]  # kept once it came again
