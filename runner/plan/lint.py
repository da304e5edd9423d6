"""``lint_text``: the analysis of plain SQL, re-exported for benchmarks and tools."""

from runner.plan.build import lint_text

__all__ = ["lint_text"]
