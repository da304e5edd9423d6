"""`signoff lint` of a real pg_dump (a psql script with table data): the lines
between ``COPY ... FROM stdin;`` and ``\\.`` are data psql sends to that COPY, so
they are skipped, not read as SQL (a row can hold anything: quotes, semicolons,
"DROP TABLE", a backslash at the start of a line), whatever size the streaming
lint reads at a time."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.plan.statements import split_statements
from runner.plan.stream import read_statements

ROWS = [
    (1, "plain"),
    (2, "O'Brien; DROP TABLE patients; --"),
    (3, None),  # \N, at the start of a line when it is the first column
    (4, "tab\there, newline\nthere, backslash \\ here"),
    (5, "\\.not the end"),
]


@pytest.fixture
def dump(scratch_db_url: str, tmp_path: Path) -> Path:
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE patients (id int PRIMARY KEY, note text)")
        conn.execute("CREATE TABLE notes (body text, id int)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO patients VALUES (%s, %s)", ROWS)
            cur.executemany("INSERT INTO notes VALUES (%s, %s)", [(n, i) for i, n in ROWS])
    path = tmp_path / "dump.sql"
    done = subprocess.run(
        ["pg_dump", "--no-owner", "-f", str(path), scratch_db_url],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = path.read_text()
    assert "COPY public.patients (id, note) FROM stdin;" in text
    assert "\n\\N\t" in text  # a data line that starts with a backslash
    return path


def test_lint_of_a_pg_dump_skips_the_copy_data(dump: Path) -> None:
    result = CliRunner().invoke(main, ["lint", str(dump), "--format", "json"])
    plan = json.loads(result.stdout)
    texts = [s["text"] for s in plan["statements"]]
    copies = [t for t in texts if "\nCOPY public." in "\n" + t]
    assert len(copies) == 2, copies
    assert all(t.rstrip().endswith("FROM stdin") for t in copies), copies
    for statement in plan["statements"]:
        assert "O'Brien" not in statement["text"]
        rules = {f["rule"] for f in statement["findings"]}
        assert not rules & {"SO001", "SO006"}, (statement["text"], rules)
        # pg_dump's own \\restrict lines are meta-commands (SO005); a data line is not
        assert not any("`\\N" in f["message"] for f in statement["findings"])
    assert not any("DROP TABLE patients" in t for t in texts)
    # What follows each data block is split as usual (the constraints pg_dump adds).
    assert any("ADD CONSTRAINT patients_pkey PRIMARY KEY" in t for t in texts)


@pytest.mark.parametrize("chunk_chars", [64, 4096])
def test_streamed_and_whole_splits_agree_on_a_pg_dump(dump: Path, chunk_chars: int) -> None:
    text = dump.read_text()
    whole = [(s.text, s.line) for s in split_statements(text, psql_script=True)]
    streamed = [
        (s.text, s.line) for s in read_statements(io.StringIO(text), chunk_chars=chunk_chars)
    ]
    assert streamed == whole
