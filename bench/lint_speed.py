"""Lint speed, side by side: ``signoff lint`` against ``squawk`` on one big migration.

Generates N (default 10,000) mixed PostgreSQL migration statements into one
temporary .sql file (deterministic: seeded random), then runs several rounds,
each timing ``signoff lint FILE --format json``, ``squawk FILE`` and
``squawk --reporter json FILE`` as subprocesses (the order reversed every other
round), plus the planner alone in process (``runner.plan.lint.lint_text``).
Prints every round and the median signoff/squawk time ratios.

Two squawk timings because squawk's default (tty) reporter, which draws a
source snippet for every finding, takes far longer than its analysis on a file
this size; ``--reporter json`` is the like-for-like comparison with signoff's
``--format json``.

Both tools exit non-zero when they find problems; that is expected and not an
error. A tool that produces no usable output at all (signoff's JSON does not
parse, or a tool is missing) stops the benchmark with a message.

    python bench/lint_speed.py [--statements 10000] [--rounds 5] [--seed 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------------------
# statement generator
# ---------------------------------------------------------------------------

_TYPES = ("bigint", "integer", "text", "varchar(120)", "boolean", "timestamptz", "date", "jsonb")
_DEFAULTS = {
    "bigint": "0",
    "integer": "0",
    "text": "''",
    "varchar(120)": "'n/a'",
    "boolean": "false",
    "timestamptz": "now()",
    "date": "CURRENT_DATE",
    "jsonb": "'{}'::jsonb",
}
_WORDS = (
    "patient",
    "encounter",
    "visit",
    "note",
    "order",
    "result",
    "allergy",
    "dose",
    "ward",
    "bed",
    "claim",
    "payer",
    "status",
    "code",
    "source",
    "flag",
    "score",
    "reason",
)


@dataclass
class _Table:
    name: str
    columns: dict[str, str] = field(default_factory=dict)  # name -> type
    indexes: dict[str, str] = field(default_factory=dict)  # index -> column
    foreign_keys: set[str] = field(default_factory=set)  # referencing columns


class _Generator:
    """Plausible migrations: statements refer to tables and columns that exist."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.tables: list[_Table] = []
        self.serial = 0

    def _name(self, kind: str) -> str:
        self.serial += 1
        return f"{self.rng.choice(_WORDS)}_{kind}{self.serial}"

    def _table(self) -> _Table:
        return self.rng.choice(self.tables)

    def _plain_column(self, table: _Table) -> str | None:
        names = [c for c in table.columns if c != "id"]
        return self.rng.choice(names) if names else None

    def create_table(self) -> str:
        table = _Table(self._name("t"))
        table.columns["id"] = "bigint"
        for _ in range(self.rng.randint(2, 6)):
            table.columns[self._name("c")] = self.rng.choice(_TYPES)
        self.tables.append(table)
        cols = ",\n    ".join(
            f"{name} {typ}" + (" PRIMARY KEY" if name == "id" else "")
            for name, typ in table.columns.items()
        )
        return f"CREATE TABLE {table.name} (\n    {cols}\n)"

    def add_column(self) -> str:
        table = self._table()
        name, typ = self._name("c"), self.rng.choice(_TYPES)
        table.columns[name] = typ
        tail = self.rng.choice(
            ["", f" DEFAULT {_DEFAULTS[typ]}", f" NOT NULL DEFAULT {_DEFAULTS[typ]}", " NOT NULL"]
        )
        return f"ALTER TABLE {table.name} ADD COLUMN {name} {typ}{tail}"

    def create_index(self) -> str:
        table = self._table()
        column = self._plain_column(table) or "id"
        name = self._name("ix")
        table.indexes[name] = column
        unique = "UNIQUE " if self.rng.random() < 0.15 else ""
        concurrently = "CONCURRENTLY " if self.rng.random() < 0.4 else ""
        return f"CREATE {unique}INDEX {concurrently}{name} ON {table.name} ({column})"

    def drop_column(self) -> str | None:
        table = self._table()
        column = self._plain_column(table)
        if column is None:
            return None
        del table.columns[column]
        # PostgreSQL drops the indexes on a dropped column with it.
        table.indexes = {i: c for i, c in table.indexes.items() if c != column}
        return f"ALTER TABLE {table.name} DROP COLUMN {column}"

    def update(self) -> str:
        table = self._table()
        column = self._plain_column(table)
        if column is None:
            return f"UPDATE {table.name} SET id = id WHERE id < 0"
        value = _DEFAULTS[table.columns[column]]
        bound = self.rng.randint(1, 1_000_000)
        return f"UPDATE {table.name} SET {column} = {value} WHERE id < {bound} AND {column} IS NULL"

    def set_not_null(self) -> str | None:
        table = self._table()
        column = self._plain_column(table)
        if column is None:
            return None
        return f"ALTER TABLE {table.name} ALTER COLUMN {column} SET NOT NULL"

    def rename_column(self) -> str | None:
        table = self._table()
        column = self._plain_column(table)
        if column is None:
            return None
        new = self._name("c")
        table.columns[new] = table.columns.pop(column)
        table.indexes = {i: new if c == column else c for i, c in table.indexes.items()}
        if column in table.foreign_keys:
            table.foreign_keys.discard(column)
            table.foreign_keys.add(new)
        return f"ALTER TABLE {table.name} RENAME COLUMN {column} TO {new}"

    def rename_table(self) -> str:
        table = self._table()
        old, table.name = table.name, self._name("t")
        return f"ALTER TABLE {old} RENAME TO {table.name}"

    def comment(self) -> str:
        table = self._table()
        column = self._plain_column(table)
        text = f"{self.rng.choice(_WORDS)} data, 100% reviewed; owner's note"
        text = text.replace("'", "''")
        if column is not None and self.rng.random() < 0.5:
            return f"COMMENT ON COLUMN {table.name}.{column} IS '{text}'"
        return f"COMMENT ON TABLE {table.name} IS '{text}'"

    def alter_type(self) -> str | None:
        table = self._table()
        column = self._plain_column(table)
        if column is None or column in table.foreign_keys:
            return None
        table.columns[column] = "text"
        return f"ALTER TABLE {table.name} ALTER COLUMN {column} TYPE text"

    def foreign_key(self) -> str:
        table, target = self._table(), self._table()
        column = self._name("c")
        table.columns[column] = "bigint"
        table.foreign_keys.add(column)
        not_valid = " NOT VALID" if self.rng.random() < 0.5 else ""
        return (
            f"ALTER TABLE {table.name} ADD COLUMN {column} bigint;\n"
            f"ALTER TABLE {table.name} ADD CONSTRAINT {self._name('fk')} "
            f"FOREIGN KEY ({column}) REFERENCES {target.name} (id){not_valid}"
        )

    def check_constraint(self) -> str:
        table = self._table()
        return f"ALTER TABLE {table.name} ADD CONSTRAINT {self._name('ck')} CHECK (id > 0)" + (
            " NOT VALID" if self.rng.random() < 0.5 else ""
        )

    def drop_index(self) -> str | None:
        table = self._table()
        if not table.indexes:
            return None
        name = self.rng.choice(sorted(table.indexes))
        del table.indexes[name]
        concurrently = "CONCURRENTLY " if self.rng.random() < 0.5 else ""
        return f"DROP INDEX {concurrently}{name}"

    def drop_table(self) -> str | None:
        if len(self.tables) < 10:
            return None
        table = self.tables.pop(self.rng.randrange(len(self.tables)))
        return f"DROP TABLE {table.name} CASCADE"

    def timeout(self) -> str:
        return self.rng.choice(["SET lock_timeout = '2s'", "SET statement_timeout = '30s'"])

    def enum(self) -> str:
        return f"CREATE TYPE {self._name('e')} AS ENUM ('new', 'active', 'closed')"

    def delete(self) -> str:
        return f"DELETE FROM {self._table().name} WHERE id < {self.rng.randint(1, 1000)}"


_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("create_table", 10),
    ("add_column", 16),
    ("create_index", 12),
    ("drop_column", 5),
    ("update", 8),
    ("set_not_null", 5),
    ("rename_column", 4),
    ("rename_table", 2),
    ("comment", 8),
    ("alter_type", 3),
    ("foreign_key", 4),
    ("check_constraint", 4),
    ("drop_index", 3),
    ("drop_table", 1),
    ("timeout", 4),
    ("enum", 2),
    ("delete", 3),
)


def generate(statements: int, seed: int) -> str:
    """`statements` statements (a foreign key counts as its two), semicolon-terminated."""
    gen = _Generator(seed)
    names = [name for name, _ in _WEIGHTS]
    weights = [weight for _, weight in _WEIGHTS]
    out: list[str] = []
    count = 0
    in_transaction = False
    while count < statements:
        if not gen.tables:
            text: str | None = gen.create_table()
        else:
            maker: Callable[[], str | None] = getattr(gen, gen.rng.choices(names, weights)[0])
            text = maker()
        if text is None:
            continue
        if "CONCURRENTLY" in text and in_transaction:
            out.append("COMMIT;")
            in_transaction = False
            count += 1
        elif (
            not in_transaction
            and "CONCURRENTLY" not in text
            and count + 2 < statements
            and gen.rng.random() < 0.05
        ):
            out.append("BEGIN;")
            in_transaction = True
            count += 1
        if gen.rng.random() < 0.1:
            out.append(f"-- step {count + 1}: {gen.rng.choice(_WORDS)} change")
        out.append(text + ";")
        count += text.count(";\n") + 1
        if in_transaction and (count + 1 >= statements or gen.rng.random() < 0.2):
            out.append("COMMIT;")
            in_transaction = False
            count += 1
    if in_transaction:
        out.append("COMMIT;")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Timed:
    seconds: float
    returncode: int
    stdout: str
    stderr: str


def _time_command(command: Sequence[str], cwd: Path) -> _Timed:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.run(
            list(command), stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd, check=False
        )
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return _Timed(seconds, proc.returncode, out.read(), err.read())


def signoff_command() -> list[str]:
    script = Path(sys.executable).parent / "signoff"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "runner.cli"]


def squawk_command() -> list[str] | None:
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("squawk")
    return [found] if found else None


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _check_signoff(timed: _Timed, command: Sequence[str]) -> None:
    try:
        json.loads(timed.stdout)
    except ValueError:
        sys.exit(
            f"`{' '.join(command)}` did not print JSON (exit {timed.returncode}); "
            f"its output ends with:\n{_tail(timed.stderr or timed.stdout)}"
        )


def _check_squawk(timed: _Timed, command: Sequence[str]) -> None:
    if not timed.stdout.strip() and timed.returncode not in (0, 1):
        sys.exit(
            f"`{' '.join(command)}` failed (exit {timed.returncode}); "
            f"its output ends with:\n{_tail(timed.stderr)}"
        )


def _planner() -> Callable[[str, str], object] | str:
    try:
        from runner.plan.lint import lint_text
    except ImportError as exc:
        return f"runner.plan.lint.lint_text is not importable ({exc})"
    return lint_text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--keep", action="store_true", help="keep the generated .sql file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.statements < 1:
        parser.error("--rounds and --statements must be at least 1")

    squawk = squawk_command()
    if squawk is None:
        print("squawk not found next to Python or on PATH: pip install squawk-cli", file=sys.stderr)
        return 2
    signoff = signoff_command()

    workdir = Path(tempfile.mkdtemp(prefix="signoff-bench-"))
    sql_path = workdir / "migration.sql"
    text = generate(args.statements, args.seed)
    sql_path.write_text(text)
    print(
        f"{args.statements} statements, {len(text.splitlines())} lines, "
        f"{len(text.encode()) / 1024:.0f} KiB in {sql_path} (seed {args.seed})"
    )
    commands = {
        "signoff": [*signoff, "lint", str(sql_path), "--format", "json"],
        "squawk": [*squawk, str(sql_path)],
        # Same output format as signoff's: squawk's default (tty) reporter
        # spends most of its time drawing source snippets, not analysing.
        "squawk-json": [*squawk, "--reporter", "json", str(sql_path)],
    }
    for tool, command in commands.items():
        print(f"{tool + ':':13} {' '.join(command)}")

    planner = _planner()
    if isinstance(planner, str):
        print(f"planner: skipped, {planner}")

    seconds: dict[str, list[float]] = {tool: [] for tool in commands}
    ratios: dict[str, list[float]] = {"squawk": [], "squawk-json": []}
    planner_s: list[float] = []
    try:
        for round_no in range(1, args.rounds + 1):
            order = list(commands) if round_no % 2 else list(reversed(commands))
            timed = {tool: _time_command(commands[tool], workdir) for tool in order}
            if round_no == 1:
                _check_signoff(timed["signoff"], commands["signoff"])
                _check_squawk(timed["squawk"], commands["squawk"])
                _check_squawk(timed["squawk-json"], commands["squawk-json"])
            for tool, result in timed.items():
                seconds[tool].append(result.seconds)
            for tool in ratios:
                ratios[tool].append(timed["signoff"].seconds / timed[tool].seconds)
            line = f"round {round_no} ({order[0]} first):" + "".join(
                f"  {tool} {timed[tool].seconds:7.3f}s (exit {timed[tool].returncode})"
                for tool in commands
            )
            if not isinstance(planner, str):
                started = time.perf_counter()
                planner(text, str(sql_path))
                planner_s.append(time.perf_counter() - started)
                line += f"  planner in-process {planner_s[-1]:7.3f}s"
            print(line, flush=True)
    finally:
        if args.keep:
            print(f"kept {sql_path}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(
        "median: "
        + ", ".join(f"{tool} {statistics.median(values):.3f}s" for tool, values in seconds.items())
    )
    print(
        "median time ratio signoff/squawk (per round): "
        f"{statistics.median(ratios['squawk']):.2f} against `squawk FILE` (tty reporter), "
        f"{statistics.median(ratios['squawk-json']):.2f} against `squawk --reporter json FILE`"
    )
    if planner_s:
        per = statistics.median(planner_s) / args.statements * 1e6
        print(
            f"planner alone (lint_text, in process): median {statistics.median(planner_s):.3f}s "
            f"for {args.statements} statements ({per:.0f} us/statement)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
