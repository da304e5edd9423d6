"""SO609: LOAD puts a shared library's code into the session's server process."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO609",
    "load-library",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="LOAD 'library' runs a shared library's code inside the server process.",
    rationale="""
        LOAD loads a shared library file into the backend; its initialisation
        code runs at once, with the server's OS rights and access to the
        memory of the session (and, through it, every table). A superuser can
        load any file path. Nothing a migration needs requires it (extensions
        load their own libraries). Denied by default; it also stays SO002
        (unrecognised), so an allow of this rule alone still needs approval.
    """,
    safer="""
        Have the operators configure the libraries the server needs
        (shared_preload_libraries, session_preload_libraries).
    """,
    triggers=["LOAD 'auto_explain'", "load '/tmp/evil.so'"],
    passes=["SELECT 'LOAD x'", "ANALYZE patients"],
    kinds=(None,),
)
def load_library(view: StatementView, context: Context) -> Iterator[str]:
    ws = words(view.raw.tokens)
    if ws and ws[0].text == "LOAD":
        what = ws[1].text if len(ws) > 1 else "?"
        yield f"loads the shared library {what!r} into the server process"
