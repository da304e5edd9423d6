"""SO010-SO011: calls whose function bodies the analysis cannot vouch for.

A statement that calls a function runs the function's body; the body's own
statements are judged by the whole catalogue and their findings lifted onto the
calling statement, "inside function public.f, line 3: drops table ..." (see
runner/plan/bodies.py). These two rules speak when that cannot be done: the body
cannot be read, or the function is nowhere to be found.
"""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.functions import CatalogFunction, FunctionFacts
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, Example, StatementView, rule

# What an example's catalog holds: a few built-ins, and functions created outside
# the plan (the gateway reads these from pg_proc when a session starts).
_CATALOG = FunctionFacts(
    builtins=frozenset({("pg_catalog", "now"), ("pg_catalog", "lower"), ("pg_catalog", "count")}),
    functions=(
        CatalogFunction(
            "public",
            "touch",
            "f",
            "sql",
            1,
            definition=(
                "CREATE OR REPLACE FUNCTION public.touch(a integer) RETURNS void "
                "LANGUAGE sql AS $function$ UPDATE visits SET seen = now() WHERE id = a "
                "$function$"
            ),
        ),
    ),
)


@rule(
    "SO010",
    "unreadable-function-body",
    Category.UNANALYSABLE,
    Severity.ERROR,
    summary="The statement runs, or replaces, a function whose body cannot be read.",
    rationale="""
        A call runs the function's body, so the body is analysed like the
        statement itself at every call (defining a new function runs nothing and
        is not reported; replacing one already in place is, as what calls it runs
        the new body). A body written in
        another language (plpython, plperl, C), dynamic SQL (EXECUTE of a
        computed string), a PL/pgSQL body PostgreSQL's parser rejects, or calls
        nested deeper than the analysis follows reveal what they run only when
        they run, so the analysis cannot vouch for them. That holds for calls
        wherever they are: a SELECT, CALL, a column DEFAULT, a CHECK, a view, an
        index expression, a policy, a trigger's EXECUTE FUNCTION.
    """,
    safer="""
        Write the function in SQL or PL/pgSQL with its statements spelled out (or
        EXECUTE string literals only); otherwise a reviewer must approve it.
    """,
    triggers=[
        "CREATE FUNCTION purge() RETURNS void LANGUAGE plpython3u AS "
        "$$ plpy.execute('DROP TABLE patients') $$;\nSELECT purge()",
        "CREATE FUNCTION wipe(t text) RETURNS void LANGUAGE plpgsql AS "
        "$$ BEGIN EXECUTE 'TRUNCATE ' || quote_ident(t); END $$;\nSELECT wipe('patients')",
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN EXECUTE format('DELETE FROM %I', TG_ARGV[0]); RETURN NEW; END $$;\n"
        "CREATE TRIGGER t_f AFTER INSERT ON visits FOR EACH ROW EXECUTE FUNCTION f('audit')",
        "CREATE FUNCTION a() RETURNS int LANGUAGE sql AS $$ SELECT b() $$;\n"
        "CREATE FUNCTION b() RETURNS int LANGUAGE sql AS $$ SELECT c() $$;\n"
        "CREATE FUNCTION c() RETURNS int LANGUAGE sql AS $$ SELECT d() $$;\n"
        "CREATE FUNCTION d() RETURNS int LANGUAGE sql AS $$ SELECT e() $$;\n"
        "CREATE FUNCTION e() RETURNS int LANGUAGE sql AS $$ SELECT f() $$;\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT g() $$;\n"
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql AS $$ SELECT h() $$;\n"
        "CREATE FUNCTION h() RETURNS int LANGUAGE sql AS $$ SELECT i() $$;\n"
        "CREATE FUNCTION i() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
        "SELECT a()",
    ],
    passes=[
        "CREATE FUNCTION purge() RETURNS void LANGUAGE plpython3u AS "
        "$$ plpy.execute('DROP TABLE patients') $$",
        "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\nSELECT one()",
        "CREATE FUNCTION note() RETURNS void LANGUAGE plpgsql AS "
        "$$ BEGIN EXECUTE 'ANALYZE visits'; END $$;\nSELECT note()",
        "SELECT lower('X')",
    ],
)
def unreadable_function_body(view: StatementView, context: Context) -> Iterator[str]:
    yield from view.function_problems


@rule(
    "SO011",
    "unknown-function",
    Category.UNANALYSABLE,
    Severity.ERROR,
    summary="The statement calls a function neither the catalog nor the plan defines.",
    rationale="""
        With the database's catalog read (the gateway always reads it, signoff
        plan and lint do with --database-url), every function a call can reach
        is known: built in, installed by an extension, created in the database,
        or created earlier in the plan or session. A call to any other name runs
        a body the analysis has not seen (a function created since the catalog
        was read, or by a session the gateway does not follow), so it is not
        passed as safe. Without a catalog only the plan's own functions are
        judged and this rule is silent.
    """,
    safer="""
        Create the function earlier in the same plan or session (its body is then
        judged), or have a reviewer approve the call.
    """,
    triggers=[
        Example("SELECT archive_old_patients()", functions=_CATALOG),
        Example("INSERT INTO visits (id) VALUES (next_visit_id())", functions=_CATALOG),
    ],
    passes=[
        Example("SELECT now(), lower('A'), count(*) FROM visits", functions=_CATALOG),
        Example("SELECT touch(1)", functions=_CATALOG),
        Example(
            "CREATE FUNCTION two() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$;\nSELECT two()",
            functions=_CATALOG,
        ),
        "SELECT archive_old_patients()",
    ],
)
def unknown_function(view: StatementView, context: Context) -> Iterator[str]:
    yield from view.unknown_calls
