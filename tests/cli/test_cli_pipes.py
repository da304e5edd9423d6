"""A closed pipe ends a command quietly, as Unix tools do (``signoff rules | head -1``)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_reader_that_went_away_ends_the_command_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        run = subprocess.run(
            [sys.executable, "-m", "runner.cli", "rules"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert run.returncode == 141  # 128 + SIGPIPE, as a process SIGPIPE ended
    assert run.stderr == ""
