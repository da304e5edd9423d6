"""SO005, SO006: psql meta-commands in a script given to lint.

psql runs a backslash line itself; the server never sees it, and neither does
Signoff's apply, which sends only the statements. Most meta-commands only
change what psql prints or which variables it holds (SO005, advisory); the ones
that change what runs (another file included, another database connected, a
query's output run as SQL, a shell command, a conditional, a statement cut in
two) fail closed (SO006): the plan Signoff shows is then not what psql would run.
"""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.statements import MetaCommand

# Meta-commands that leave what runs on the server as it is: output, variables,
# describing objects. Anything not named here (or \set of a variable that
# changes how statements run) is treated as changing what runs.
_HARMLESS = frozenset(
    {
        "\\set", "\\unset", "\\echo", "\\qecho", "\\warn", "\\pset", "\\timing",
        "\\x", "\\a", "\\t", "\\f", "\\H", "\\C", "\\T", "\\encoding", "\\conninfo",
        "\\errverbose", "\\restrict", "\\unrestrict", "\\p", "\\print", "\\prompt",
        "\\g", "\\gx", "\\gset", "\\gdesc", "\\crosstabview", "\\getenv", "\\h", "\\help",
        "\\?", "\\l", "\\list", "\\z", "\\sf", "\\sv", "\\dconfig",
    }
)  # fmt: skip
# \set of these changes how psql runs the statements around it.
_BEHAVIOUR_VARIABLES = frozenset({"AUTOCOMMIT", "ON_ERROR_ROLLBACK", "SINGLESTEP", "FETCH_COUNT"})
_WHY = {
    "\\i": "includes another file",
    "\\ir": "includes another file",
    "\\include": "includes another file",
    "\\include_relative": "includes another file",
    "\\c": "connects to another database or as another user",
    "\\connect": "connects to another database or as another user",
    "\\gexec": "runs each value the query returns as SQL",
    "\\!": "runs a shell command",
    "\\copy": "copies data between a client file and a table",
    "\\if": "runs the lines after it only on a condition",
    "\\elif": "runs the lines after it only on a condition",
    "\\else": "runs the lines after it only on a condition",
    "\\endif": "ends a conditional block",
    "\\q": "stops the script: the statements after it do not run",
    "\\quit": "stops the script: the statements after it do not run",
    "\\r": "throws away the statement typed so far",
    "\\reset": "throws away the statement typed so far",
    "\\bind": "binds parameter values into the next statement",
    "\\watch": "runs the query again and again",
}


def _describe(describe: str) -> bool:
    # \d, \dt+, \dS... only describe objects.
    return describe.startswith("\\d") and describe[2:].rstrip("+").isalpha()


def changes_what_runs(meta: MetaCommand) -> str | None:
    """Why a meta-command changes what psql runs, or None when it does not."""
    name = meta.name
    if meta.inside_statement and name not in ("\\g", "\\gx", "\\gset", "\\gdesc", "\\gexec"):
        return (
            "comes in the middle of a statement: psql would go on reading the statement "
            "after it, Signoff ends the statement here"
        )
    if name == "\\set":
        words = meta.text.split()
        if len(words) > 1 and words[1].upper() in _BEHAVIOUR_VARIABLES:
            return f"sets {words[1].upper()}, which changes how psql runs the statements"
        return None
    if name in _HARMLESS or _describe(name):
        return None
    return _WHY.get(name, "is not one Signoff knows to be harmless")


def _where(view: StatementView, meta: MetaCommand) -> str:
    return f"line {meta.line}" if not view.raw.meta_only else f"line {meta.line}, alone"


@rule(
    "SO005",
    "psql-meta-command",
    Category.HYGIENE,
    Severity.INFO,
    summary="A psql meta-command (\\set, \\echo...): not SQL, skipped; apply does not run it.",
    rationale="""
        A line of a psql script that starts with a backslash is run by psql
        itself and never sent to the server: \\set ON_ERROR_STOP on, \\echo,
        \\timing, \\gset after a query. Signoff analyses the statements around
        it as psql sends them, and its apply sends only statements, so the
        meta-command has no effect there. These only change what psql prints
        or the variables it holds, so they are noted, not blocked.
    """,
    safer="""
        Keep psql settings out of migrations (apply stops at the first error and
        runs each revision as planned), or leave them: they are only noted.
    """,
    triggers=[
        "\\set ON_ERROR_STOP on\nCREATE TABLE notes (id bigint)",
        "SELECT count(*) AS n FROM patients\n\\gset\n\\echo :n patients",
    ],
    passes=["SELECT E'\\\\set x'", "SELECT $$\n\\set inside a string\n$$"],
)
def psql_meta_command(view: StatementView, context: Context) -> Iterator[str]:
    for meta in view.raw.meta_commands:
        if changes_what_runs(meta) is None:
            yield (
                f"psql meta-command `{meta.name}` ({_where(view, meta)}): not SQL; "
                "Signoff skips it — apply does not run it"
            )


@rule(
    "SO006",
    "psql-meta-command-changes-what-runs",
    Category.UNANALYSABLE,
    Severity.ERROR,
    summary="A psql meta-command that changes what runs (\\i, \\connect, \\gexec...).",
    rationale="""
        Some psql meta-commands change which SQL runs, or where: \\i and \\ir
        include another file, \\connect switches database or user, \\gexec runs
        a query's output as SQL, \\! runs a shell command, \\copy moves data,
        \\if runs lines only on a condition, \\q stops the script, a
        meta-command in the middle of a statement makes psql go on reading it.
        Signoff cannot see what they lead to and its apply does not run them, so
        what Signoff shows is not what psql would do: fail closed, a reviewer
        has to read it. Meta-commands Signoff does not know count as these.
    """,
    safer="""
        Put the SQL itself in the migration (inline the included file, one
        database per migration), or have a reviewer approve it.
    """,
    triggers=[
        "\\connect ehr\nDROP TABLE IF EXISTS scratch",
        "\\i other.sql",
        "SELECT format('VACUUM %I', tablename) FROM pg_tables\n\\gexec",
        "\\set AUTOCOMMIT off\nUPDATE patients SET active = true WHERE id = 1",
        "SELECT 1 +\n\\echo half\n2",
    ],
    passes=["\\set ON_ERROR_STOP on\nSELECT 1", "SELECT 1;\n\\dt+ patients"],
)
def psql_meta_command_changes_what_runs(view: StatementView, context: Context) -> Iterator[str]:
    for meta in view.raw.meta_commands:
        why = changes_what_runs(meta)
        if why is not None:
            yield (
                f"psql meta-command `{meta.text[:60]}` ({_where(view, meta)}) {why}; "
                "Signoff cannot see what that runs and skips it — apply does not run it"
            )
