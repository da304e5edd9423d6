"""Lint of one huge file, side by side: time and peak memory of ``signoff lint``
(``--format text`` and ``--format json``) and ``squawk --reporter json``.

Generates a ~50 MB migration (``--size-mb``; seeded, the statement mix of
``bench/lint_speed.py``: CREATE TABLE, ADD COLUMN, indexes, foreign keys,
UPDATE ... WHERE, renames, comments, transactions...) into a temporary
directory, then runs the three commands one after the other as child
processes, each writing its report to a file there. Each child's wall time is
measured around it and its peak RSS is the ``ru_maxrss`` of that child alone
(``os.wait4`` returns the child's own rusage; ``RUSAGE_CHILDREN`` would give the
largest of all children so far). Prints one line per command.

Both tools exit non-zero when they find problems; that is expected. The bench
fails only when a command produces no usable report (signoff's report does not
end with its summary, squawk's JSON is empty, a tool is missing). No figure is
asserted: the machine is shared, so quote the numbers of one run with its load.

    python bench/lint_big.py [--size-mb 50] [--seed 1] [--keep] [--only signoff-text,...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from lint_speed import generate  # noqa: E402 (the generator lives beside this bench)

# Bytes per statement of lint_speed's generator (measured on 50,000 statements).
_BYTES_PER_STATEMENT = 74.2


@dataclass(frozen=True)
class Run:
    name: str
    command: list[str]
    wall_s: float
    peak_rss_mb: float
    status: int
    report_bytes: int


def _signoff() -> list[str]:
    found = shutil.which("signoff", path=str(Path(sys.executable).parent)) or shutil.which(
        "signoff"
    )
    return [found] if found else [sys.executable, "-m", "runner.cli"]


def _squawk() -> list[str] | None:
    found = shutil.which("squawk", path=str(Path(sys.executable).parent)) or shutil.which("squawk")
    return [found] if found else None


def run_child(name: str, command: Sequence[str], report: Path, cwd: Path) -> Run:
    """Run ``command`` with stdout to ``report``; its own wall time and peak RSS."""
    with report.open("wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.PIPE, cwd=cwd)
        assert process.stderr is not None
        stderr = process.stderr.read()  # small: a verdict line at most
        _, wait_status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(wait_status)
    if process.returncode < 0 or process.returncode == 2:
        raise SystemExit(f"{name}: exit {process.returncode}: {stderr.decode()[-500:]}")
    # ru_maxrss is in kilobytes on Linux.
    return Run(
        name,
        list(command),
        wall,
        usage.ru_maxrss / 1024,
        process.returncode,
        report.stat().st_size,
    )


def _check(run: Run, report: Path) -> None:
    with report.open("rb") as file:
        file.seek(max(0, run.report_bytes - 300))
        tail = file.read().decode("utf-8", "replace")
    if run.name == "signoff-text" and "Plan hash" not in tail:
        raise SystemExit(f"signoff text report has no summary: ...{tail[-200:]!r}")
    if run.name == "signoff-json" and '"short_hash"' not in tail:
        raise SystemExit(f"signoff JSON report is incomplete: ...{tail[-200:]!r}")
    if run.name == "squawk-json" and run.report_bytes < 3:
        raise SystemExit("squawk wrote no report")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the SQL and the reports")
    parser.add_argument(
        "--only", default="signoff-text,signoff-json,squawk-json", help="comma-separated"
    )
    args = parser.parse_args(argv)
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}

    workdir = Path(tempfile.mkdtemp(prefix="signoff-lint-big-"))
    try:
        statements = int(args.size_mb * 1_000_000 / _BYTES_PER_STATEMENT)
        started = time.perf_counter()
        sql = generate(statements, args.seed)
        path = workdir / "big.sql"
        path.write_text(sql, encoding="utf-8")
        size_mb = len(sql.encode("utf-8")) / 1_000_000
        lines = sql.count("\n")
        del sql
        print(
            f"generated {path.name}: {size_mb:.1f} MB, {statements:,} statements, "
            f"{lines:,} lines (seed {args.seed}, {time.perf_counter() - started:.1f} s)"
        )
        print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        commands: dict[str, list[str]] = {
            "signoff-text": [*_signoff(), "lint", path.name, "--format", "text"],
            "signoff-json": [*_signoff(), "lint", path.name, "--format", "json"],
        }
        squawk = _squawk()
        if squawk is not None:
            commands["squawk-json"] = [*squawk, "--reporter", "json", path.name]
        elif "squawk-json" in wanted:
            print("squawk not found (pip install squawk-cli): its line is skipped")
        runs = []
        for name, command in commands.items():
            if name not in wanted:
                continue
            report = workdir / f"{name}.out"
            run = run_child(name, command, report, workdir)
            _check(run, report)
            runs.append(run)
            print(
                f"{name:<13} wall {run.wall_s:7.1f} s   peak RSS {run.peak_rss_mb:7.0f} MB   "
                f"exit {run.status}   report {run.report_bytes / 1_000_000:8.1f} MB"
            )
        squawk_run = next((r for r in runs if r.name == "squawk-json"), None)
        if squawk_run is not None:
            for run in runs:
                if run is not squawk_run:
                    print(
                        f"{run.name}/squawk: time x{run.wall_s / squawk_run.wall_s:.2f}, "
                        f"memory x{run.peak_rss_mb / squawk_run.peak_rss_mb:.2f}"
                    )
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        if args.keep:
            print(f"kept {workdir}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
