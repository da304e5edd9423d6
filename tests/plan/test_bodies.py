"""Function, procedure, trigger and DO bodies are read: a statement is judged by the
statements it runs, wherever they hide (issue 10).

Each case is a plan as signoff lint reads it: offline (no catalog: only the plan's
own functions are judged) or with a catalog handed in as facts (what the gateway
and ``--database-url`` read from pg_proc).
"""

from __future__ import annotations

import pytest

from runner.plan.build import ServerFacts, lint_text
from runner.plan.functions import (
    CatalogDefault,
    CatalogFunction,
    CatalogTrigger,
    CatalogView,
    FunctionFacts,
)
from runner.plan.model import Category, Decision
from runner.plan.policy import Policy

PG15 = Policy(server_version=150000)
BUILTINS = frozenset(
    {("pg_catalog", "lower"), ("pg_catalog", "now"), ("pg_catalog", "count")}
    | {("pg_catalog", "format"), ("pg_catalog", "quote_ident"), ("public", "gen_uuid")}
    | {("pg_catalog", "set_config"), ("pg_catalog", "current_setting"), ("pg_catalog", "nextval")}
)
# The built-in overloads' argument types, as pg_proc gives them (lower(text) among them).
SIGNATURES = frozenset(
    {("pg_catalog", "lower", ("text",)), ("pg_catalog", "lower", ("anyrange",))}
    | {("pg_catalog", "now", ()), ("pg_catalog", "count", ()), ("pg_catalog", "count", ("any",))}
)
CATALOG = ServerFacts(functions=FunctionFacts(builtins=BUILTINS, builtin_signatures=SIGNATURES))


def by_line(sql: str, facts: ServerFacts | None = None) -> dict[int, list[tuple[str, str]]]:
    """line -> [(rule, message)] of the findings that need a reviewer or are denied."""
    plan = lint_text(sql, "t.sql", policy=PG15, facts=facts)
    out: dict[int, list[tuple[str, str]]] = {}
    for statement, finding in plan.findings:
        if finding.decision in (Decision.NEEDS_APPROVAL, Decision.DENY):
            out.setdefault(statement.line, []).append((finding.rule, finding.message))
    return out


def rules_on(sql: str, line: int, facts: ServerFacts | None = None) -> set[str]:
    return {rule for rule, _ in by_line(sql, facts).get(line, [])}


def test_the_issue_reproducer_sql_function() -> None:
    sql = "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ DROP TABLE t $$;\nSELECT f();\n"
    found = by_line(sql)
    assert 1 not in found  # defining runs nothing (the corpus calls it safe)
    assert found[2] == [
        ("SO101", "inside function public.f, line 1: drops table t and all its rows")
    ]


def test_plpgsql_function_line_numbers_point_into_the_plan() -> None:
    sql = (
        "CREATE FUNCTION purge() RETURNS void LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  RAISE NOTICE 'purging';\n"
        "  TRUNCATE audit_log;\n"
        "END $$;\n"
        "SELECT purge();\n"
    )
    assert by_line(sql)[6] == [
        (
            "SO109",
            "inside function public.purge, line 4: truncates table audit_log: deletes every row",
        )
    ]


@pytest.mark.parametrize(
    "body",
    [
        "DECLARE r record; BEGIN FOR r IN DELETE FROM t RETURNING * LOOP END LOOP; END",
        "DECLARE c refcursor; BEGIN OPEN c FOR DELETE FROM t RETURNING *; END",
        "DECLARE c CURSOR FOR DELETE FROM t RETURNING *; BEGIN OPEN c; END",
        "DECLARE r record; BEGIN FOR r IN EXECUTE 'DELETE FROM t RETURNING *' LOOP END LOOP; END",
        "BEGIN PERFORM 1; EXCEPTION WHEN others THEN DELETE FROM t; END",
        "BEGIN IF true THEN WHILE false LOOP DELETE FROM t; END LOOP; END IF; END",
    ],
)
def test_do_block_headers_loops_cursors_and_handlers_are_read(body: str) -> None:
    """The old token reader skipped loop and cursor headers: FOR r IN DELETE emptied t."""
    assert "SO111" in rules_on(f"DO $$ {body} $$", 1)


def test_return_query_is_read() -> None:
    sql = (
        "CREATE FUNCTION q() RETURNS SETOF t LANGUAGE plpgsql AS $$ BEGIN "
        "RETURN QUERY DELETE FROM t RETURNING *; END $$;\n"
        "SELECT * FROM q();\n"
    )
    assert "SO111" in rules_on(sql, 2)


def test_execute_literal_is_sql_and_computed_is_unanalysable() -> None:
    literal = "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$"
    assert by_line(literal)[1] == [
        ("SO101", "EXECUTE string, line 1: drops table t and all its rows")
    ]
    computed = (
        "CREATE FUNCTION wipe(name text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
        "EXECUTE format('DROP TABLE %I', name); END $$;\n"
        "SELECT wipe('t');\n"
    )
    found = by_line(computed)
    assert [rule for rule, _ in found[2]] == ["SO010"]
    assert "inside function public.wipe: line 1: EXECUTE of a computed string" in found[2][0][1]


def test_a_function_calling_a_function_is_followed() -> None:
    sql = (
        "CREATE FUNCTION inner_drop() RETURNS void LANGUAGE sql AS $$ DROP TABLE t $$;\n"
        "CREATE FUNCTION outer_call() RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM inner_drop(); END $$;\n"
        "SELECT outer_call();\n"
    )
    ((rule, message),) = by_line(sql)[3]
    assert rule == "SO101"
    assert message.startswith(
        "inside function public.outer_call, line 2: inside function public.inner_drop, line 1:"
    )


def test_calls_in_expressions_of_a_plpgsql_body_are_followed() -> None:
    sql = (
        "CREATE FUNCTION boom() RETURNS int LANGUAGE sql AS $$ DELETE FROM t RETURNING 1 $$;\n"
        "DO $$ DECLARE x int := 0; BEGIN IF boom() > 0 THEN x := boom(); END IF; END $$;\n"
    )
    assert "SO111" in rules_on(sql, 2)


def test_a_harmless_body_stays_quiet() -> None:
    sql = (
        "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
        "CREATE FUNCTION add_note() RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO notes (body) VALUES ('x'); END $$;\n"
        "SELECT one();\n"
        "SELECT add_note();\n"
        "CREATE PROCEDURE tick() LANGUAGE sql AS\n"
        "$$ UPDATE counters SET n = n + 1 WHERE id = 1 $$;\n"
        "CALL tick();\n"
    )
    found = by_line(sql, CATALOG)
    assert {line: rules for line, rules in found.items() if line != 7} == {}
    # CALL is still a statement Signoff does not recognise; nothing lifted from the body.
    assert [rule for rule, _ in found[7]] == ["SO002"]


def test_trigger_is_flagged_at_create_trigger_with_what_its_function_does() -> None:
    sql = (
        "CREATE FUNCTION on_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "DELETE FROM audit; RETURN NEW; END $$;\n"
        "CREATE TRIGGER t_ins AFTER INSERT ON visits FOR EACH ROW EXECUTE FUNCTION on_insert();\n"
    )
    messages = [m for rule, m in by_line(sql)[2] if rule == "SO111"]
    assert messages == [
        "inside trigger function public.on_insert, line 1: "
        "deletes every row of audit (no WHERE clause)"
    ]


def test_defaults_views_checks_indexes_and_policies_run_their_calls() -> None:
    define = "CREATE FUNCTION boom() RETURNS int LANGUAGE sql AS $$ DELETE FROM t RETURNING 1 $$;\n"
    for statement in (
        "CREATE TABLE u (a int DEFAULT boom())",
        "ALTER TABLE visits ALTER COLUMN a SET DEFAULT boom()",
        "CREATE VIEW v AS SELECT boom()",
        "ALTER TABLE visits ADD CONSTRAINT c CHECK (boom() > 0)",
        "CREATE INDEX i ON visits ((a + boom()))",
        "CREATE POLICY p ON visits USING (boom() > 0)",
        "INSERT INTO visits (a) VALUES (boom())",
        "UPDATE visits SET a = 1 WHERE id = boom()",
    ):
        assert "SO111" in rules_on(define + statement, 2), statement


def test_search_path_decides_whether_a_function_shadows_a_builtin() -> None:
    sql = (
        "CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql AS "
        "$$ DROP TABLE t; SELECT 'x' $$;\n"
        "SELECT lower('A');\n"  # pg_catalog first: the built-in
        "SET search_path = public, pg_catalog;\n"
        "SELECT lower('A');\n"  # public before pg_catalog: the plan's function
        "RESET search_path;\n"
        "SELECT lower('A');\n"
        "SELECT public.lower('A');\n"  # named explicitly
        "BEGIN;\n"
        "SET LOCAL search_path = public, pg_catalog;\n"
        "SELECT lower('A');\n"
        "COMMIT;\n"
        "SELECT lower('A');\n"  # the SET LOCAL ended with its transaction
    )
    found = by_line(sql, CATALOG)
    assert {line for line, rules in found.items() if ("SO101" in {r for r, _ in rules})} == {
        4,
        7,
        10,
    }


def test_create_or_replace_replaces_and_drop_forgets() -> None:
    sql = (
        "CREATE FUNCTION g() RETURNS void LANGUAGE sql AS $$ SELECT 1 $$;\n"
        "SELECT g();\n"
        "CREATE OR REPLACE FUNCTION g() RETURNS void LANGUAGE sql AS $$ TRUNCATE t $$;\n"
        "SELECT g();\n"
        "DROP FUNCTION g();\n"
        "SELECT g();\n"
    )
    offline = by_line(sql)
    assert 2 not in offline and "SO109" in {r for r, _ in offline[4]} and 6 not in offline
    # With the catalog read, a function that is nowhere to be found needs a reviewer.
    with_catalog = by_line(sql, CATALOG)
    assert {r for r, _ in with_catalog[6]} == {"SO011"}


def test_overloads_are_told_apart_by_argument_count() -> None:
    sql = (
        "CREATE FUNCTION h(a int) RETURNS void LANGUAGE sql AS $$ TRUNCATE t $$;\n"
        "CREATE FUNCTION h() RETURNS void LANGUAGE sql AS $$ SELECT 1 $$;\n"
        "SELECT h();\n"
        "SELECT h(1);\n"
    )
    found = by_line(sql)
    assert 3 not in found and "SO109" in {r for r, _ in found[4]}


def test_recursion_is_bounded() -> None:
    recursive = (
        "CREATE FUNCTION r(n int) RETURNS int LANGUAGE sql AS $$ SELECT r(n - 1) $$;\n"
        "SELECT r(3);\n"
    )
    assert by_line(recursive) == {}  # a function calling itself is judged once
    chain = "".join(
        f"CREATE FUNCTION c{i}() RETURNS int LANGUAGE sql AS $$ SELECT c{i + 1}() $$;\n"
        for i in range(12)
    )
    chain += "CREATE FUNCTION c12() RETURNS int LANGUAGE sql AS $$ TRUNCATE t RETURNING 1 $$;\n"
    chain += "SELECT c0();\n"
    found = by_line(chain)
    ((rule, message),) = found[14]
    assert rule == "SO010" and "calls nested more than 8 deep are not followed" in message


def test_other_languages_are_unanalysable_at_the_call() -> None:
    sql = (
        "CREATE FUNCTION py() RETURNS void LANGUAGE plpython3u AS "
        "$$ plpy.execute('DROP TABLE t') $$;\n"
        "SELECT py();\n"
    )
    found = by_line(sql)
    assert 1 not in found
    ((rule, message),) = found[2]
    assert rule == "SO010" and "language plpython3u" in message


def test_begin_atomic_and_return_bodies_are_read_from_the_catalog() -> None:
    facts = ServerFacts(
        functions=FunctionFacts(
            builtins=BUILTINS,
            functions=(
                CatalogFunction(
                    "app",
                    "purge",
                    "p",
                    "sql",
                    0,
                    definition="CREATE OR REPLACE PROCEDURE app.purge()\n LANGUAGE sql\n"
                    "BEGIN ATOMIC\n DELETE FROM app.t;\nEND",
                ),
                CatalogFunction(
                    "app",
                    "one",
                    "f",
                    "sql",
                    0,
                    definition="CREATE OR REPLACE FUNCTION app.one()\n RETURNS integer\n"
                    " LANGUAGE sql\nRETURN 1",
                ),
                CatalogFunction("app", "native", "f", "c", 0),
                CatalogFunction("app", "total", "a", "internal", 1),
            ),
        )
    )
    assert "SO111" in rules_on("CALL app.purge()", 1, facts)
    message = next(m for r, m in by_line("CALL app.purge()", facts)[1] if r == "SO111")
    assert message.startswith("inside procedure app.purge, line 1 of its body: ")
    assert by_line("SELECT app.one(), gen_uuid(), count(*)", facts) == {}
    assert rules_on("SELECT app.native()", 1, facts) == {"SO010"}
    assert rules_on("SELECT app.total(x) FROM t", 1, facts) == {"SO010"}
    assert rules_on("SELECT app.missing()", 1, facts) == {"SO011"}
    # A catalog function is resolved along search_path like any other.
    assert "SO111" in rules_on("SET search_path = app;\nCALL purge();\n", 2, facts)


def test_a_catalog_plpgsql_function_with_arguments_and_a_trigger_function() -> None:
    facts = ServerFacts(
        functions=FunctionFacts(
            builtins=BUILTINS,
            functions=(
                CatalogFunction(
                    "public",
                    "forget",
                    "f",
                    "plpgsql",
                    1,
                    definition="CREATE OR REPLACE FUNCTION public.forget(p_id bigint)\n"
                    " RETURNS void\n LANGUAGE plpgsql\nAS $function$\nBEGIN\n"
                    "  p_id := p_id + 0;\n  DELETE FROM patients;\nEND\n$function$\n",
                ),
                CatalogFunction(
                    "public",
                    "stamp",
                    "f",
                    "plpgsql",
                    0,
                    definition="CREATE OR REPLACE FUNCTION public.stamp()\n"
                    " RETURNS trigger\n LANGUAGE plpgsql\nAS $function$\nBEGIN\n"
                    "  NEW.seen := now();\n  RETURN NEW;\nEND\n$function$\n",
                ),
            ),
        )
    )
    found = by_line("SELECT forget(1)", facts)
    assert [m for r, m in found[1] if r == "SO111"] == [
        "inside function public.forget, line 4 of its body: deletes every row of patients "
        "(no WHERE clause)"
    ]
    trigger = "CREATE TRIGGER s BEFORE UPDATE ON visits FOR EACH ROW EXECUTE FUNCTION stamp()"
    assert by_line(trigger, facts) == {}


def test_unknown_calls_are_judged_only_when_the_catalog_was_read() -> None:
    assert by_line("SELECT archive_everything()") == {}
    assert rules_on("SELECT archive_everything()", 1, CATALOG) == {"SO011"}
    assert by_line("SELECT lower('a'), now(), count(*) FROM t", CATALOG) == {}


def test_a_create_function_inside_a_do_block_is_known_after_it() -> None:
    sql = (
        "DO $$ BEGIN EXECUTE 'CREATE FUNCTION z() RETURNS void LANGUAGE sql AS ''TRUNCATE t'''; "
        "END $$;\n"
        "SELECT z();\n"
    )
    assert "SO109" in rules_on(sql, 2, CATALOG)


def test_findings_keep_the_inner_rules_category() -> None:
    plan = lint_text(
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ DROP TABLE t $$;\nSELECT f();",
        policy=PG15,
    )
    ((_, finding),) = plan.findings
    assert finding.category is Category.DESTRUCTIVE and finding.rule == "SO101"


def test_replacing_a_function_in_place_is_judged_as_what_its_callers_run() -> None:
    """A trigger, view or DEFAULT over a harmless function runs whatever replaces it,
    and none of them is judged again: the replacement carries what needs a reviewer."""
    sql = (
        "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN NEW; END $$;\n"
        "CREATE TRIGGER s BEFORE INSERT ON visits FOR EACH ROW EXECUTE FUNCTION stamp();\n"
        "CREATE OR REPLACE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN DELETE FROM visits; RETURN NEW; END $$;\n"
        "CREATE OR REPLACE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN CREATE INDEX ON visits (id); RETURN NEW; END $$;\n"
    )
    found = by_line(sql)
    assert [m for r, m in found[3] if r == "SO111"] == [
        "in the new body of function public.stamp, line 3: deletes every row of visits "
        "(no WHERE clause)"
    ]
    assert 4 not in found  # only what needs a reviewer is lifted (not a locking warning)
    # A catalog function replaced: the same. A new name replaces nothing (corpus S023).
    facts = ServerFacts(
        functions=FunctionFacts(
            builtins=BUILTINS,
            functions=(CatalogFunction("public", "purge_sessions", "f", "sql", 0),),
        )
    )
    replace = (
        "CREATE OR REPLACE FUNCTION purge_sessions() RETURNS void LANGUAGE sql "
        "AS $$ DELETE FROM sessions $$"
    )
    assert rules_on(replace, 1, facts) == {"SO111"}
    assert by_line(replace) == {} and by_line(replace, CATALOG) == {}


def test_set_config_of_search_path_is_followed() -> None:
    define = (
        "CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql AS "
        "$$ DROP TABLE t; SELECT 'x' $$;\n"
    )
    literal = define + "SELECT set_config('search_path', 'public, pg_catalog', false);\n"
    assert "SO101" in rules_on(literal + "SELECT lower('A');\n", 3, CATALOG)
    local = define + "SELECT set_config('search_path', 'public, pg_catalog', true);\n"
    assert by_line(local + "SELECT lower('A');\n", CATALOG) == {}  # ignored outside BEGIN
    # A computed value: search_path is unknown, so a function that may shadow is judged.
    computed = define + "SELECT set_config('search_path', current_setting('x'), false);\n"
    assert "SO101" in rules_on(computed + "SELECT lower('A');\n", 3, CATALOG)
    back = literal + "SET search_path = public;\nSELECT lower('A');\n"
    assert 4 not in by_line(back, CATALOG)


def test_the_servers_own_search_path_is_where_a_session_starts() -> None:
    shadow = (
        CatalogFunction(
            "public",
            "lower",
            "f",
            "sql",
            1,
            definition="CREATE OR REPLACE FUNCTION public.lower(text)\n RETURNS text\n"
            " LANGUAGE sql\nAS $function$ DROP TABLE t; SELECT 'x' $function$\n",
            arg_types=("text",),
        ),
    )
    default = ServerFacts(
        functions=FunctionFacts(builtins=BUILTINS, functions=shadow, builtin_signatures=SIGNATURES)
    )
    assert by_line("SELECT lower('A')", default) == {}
    altered = ServerFacts(
        functions=FunctionFacts(
            builtins=BUILTINS,
            functions=shadow,
            search_path=("public", "pg_catalog"),
            builtin_signatures=SIGNATURES,
        )
    )
    assert rules_on("SELECT lower('A')", 1, altered) == {"SO101"}
    assert by_line("SELECT pg_catalog.lower('A')", altered) == {}


def test_a_functions_own_search_path_resolves_its_body() -> None:
    shadow = (
        "CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql AS "
        "$$ DROP TABLE t; SELECT 'x' $$;\n"
    )
    own = (
        shadow + "CREATE FUNCTION f() RETURNS text LANGUAGE sql "
        "SET search_path = public, pg_catalog AS $$ SELECT lower('A') $$;\n"
        "SELECT f();\n"
    )
    assert "SO101" in rules_on(own, 3, CATALOG)
    plain = (
        shadow + "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT lower('A') $$;\n"
        "SELECT f();\n"
        "ALTER FUNCTION f() SET search_path = public, pg_catalog;\n"
        "SELECT f();\n"
    )
    found = by_line(plain, CATALOG)
    assert 3 not in found
    # Altered: the function the analysis knew is no longer what runs; not known now.
    assert {r for r, _ in found[5]} == {"SO011"}


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE CAST (int AS text) WITH FUNCTION boom(int)",
        "CREATE AGGREGATE agg(int) (SFUNC = boom, STYPE = int)",
        "CREATE AGGREGATE agg2(int) (SFUNC = int4pl, STYPE = int, FINALFUNC = boom)",
    ],
)
def test_casts_and_aggregates_run_their_functions_later(statement: str) -> None:
    define = (
        "CREATE FUNCTION boom(a int, b int DEFAULT 0) RETURNS int LANGUAGE sql AS "
        "$$ DELETE FROM t RETURNING 1 $$;\n"
    )
    messages = [m for r, m in by_line(define + statement).get(2, []) if r == "SO111"]
    assert messages and "inside function public.boom (the " in messages[0], messages


@pytest.mark.parametrize(
    "body",
    [
        "BEGIN ASSERT boom() > 0; END",
        "BEGIN RAISE EXCEPTION 'x' USING DETAIL = boom()::text; END",
        "DECLARE c CURSOR (p int) FOR SELECT p; BEGIN OPEN c(boom()); END",
        "DECLARE a int[] := ARRAY[boom()]; BEGIN NULL; END",
        "BEGIN CASE WHEN boom() = 1 THEN NULL; ELSE NULL; END CASE; END",
        "BEGIN EXECUTE 'SELECT $1' USING boom(); END",
        "BEGIN FOR i IN REVERSE boom()..1 LOOP END LOOP; END",
    ],
)
def test_every_expression_of_a_block_is_searched_for_calls(body: str) -> None:
    define = "CREATE FUNCTION boom() RETURNS int LANGUAGE sql AS $$ DELETE FROM t RETURNING 1 $$;\n"
    assert "SO111" in rules_on(define + f"DO $$ {body} $$", 2)


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "CREATE OR REPLACE FUNCTION public.ids() RETURNS SETOF int AS $$ SELECT 1 $$ LANGUAGE sql",
    ],
)
def test_definitions_sqlglot_cannot_read_are_create_function(sql: str) -> None:
    plan = lint_text(sql, "t.sql", policy=PG15)
    assert plan.statements[0].kind == "create_function"
    assert list(plan.findings) == []


def test_an_overload_with_other_argument_types_is_reached_behind_a_builtin() -> None:
    # PostgreSQL picks by argument types before path order: lower(5) runs the user's
    # public.lower(integer), although pg_catalog (with lower(text)) comes first.
    define = (
        "CREATE FUNCTION public.lower(n int) RETURNS text LANGUAGE sql AS "
        "$$ DROP TABLE t; SELECT 'x' $$;\n"
    )
    assert "SO101" in rules_on(define + "SELECT lower(5);\n", 2, CATALOG)
    same_types = define.replace("(n int)", "(s text)")
    assert by_line(same_types + "SELECT lower('A');\n", CATALOG) == {}
    # Built-in signatures not read: any user overload on the path may be the one called.
    unknown = ServerFacts(functions=FunctionFacts(builtins=BUILTINS))
    assert "SO101" in rules_on(same_types + "SELECT lower('A');\n", 2, unknown)


def test_a_catalog_overload_behind_a_builtin_is_judged_by_its_types() -> None:
    def catalog(arg_types: tuple[str, ...]) -> ServerFacts:
        shadow = CatalogFunction(
            "public",
            "lower",
            "f",
            "sql",
            1,
            definition="CREATE OR REPLACE FUNCTION public.lower(integer)\n RETURNS text\n"
            " LANGUAGE sql\nAS $function$ TRUNCATE t; SELECT 'x' $function$\n",
            arg_types=arg_types,
        )
        return ServerFacts(
            functions=FunctionFacts(
                builtins=BUILTINS, functions=(shadow,), builtin_signatures=SIGNATURES
            )
        )

    assert "SO109" in rules_on("SELECT lower(5)", 1, catalog(("int4",)))  # TRUNCATE
    assert by_line("SELECT lower('A')", catalog(("text",))) == {}


def test_every_user_overload_on_the_path_may_be_called() -> None:
    sql = (
        "CREATE SCHEMA other;\n"
        "CREATE FUNCTION public.f(s text) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
        "CREATE FUNCTION other.f(n int) RETURNS int LANGUAGE sql AS "
        "$$ DELETE FROM t RETURNING 1 $$;\n"
        "SET search_path = public, other;\n"
        "SELECT f(5);\n"
    )
    assert "SO111" in rules_on(sql, 5, CATALOG)


def _with_trigger(events: frozenset[str], body: str = "DELETE FROM charts") -> ServerFacts:
    purge = CatalogFunction(
        "public",
        "purge",
        "f",
        "plpgsql",
        0,
        definition="CREATE OR REPLACE FUNCTION public.purge()\n RETURNS trigger\n"
        f" LANGUAGE plpgsql\nAS $function$ BEGIN {body}; RETURN NEW; END $function$\n",
        arg_types=(),
    )
    trigger = CatalogTrigger("public", "charts", "public", "purge", events)
    return ServerFacts(
        functions=FunctionFacts(
            builtins=BUILTINS,
            functions=(purge,),
            builtin_signatures=SIGNATURES,
            triggers=(trigger,),
        )
    )


def test_a_write_runs_the_catalogs_triggers_on_its_table() -> None:
    on_insert = _with_trigger(frozenset({"INSERT"}))
    found = by_line("INSERT INTO charts (id) VALUES (1)", on_insert)
    assert [r for r, _ in found[1]] == ["SO111"], found
    assert found[1][0][1].startswith(
        "inside trigger function public.purge (a trigger on public.charts)"
    )
    assert "SO111" in rules_on("INSERT INTO public.charts (id) VALUES (1)", 1, on_insert)
    # Through a data-modifying CTE, and an upsert's UPDATE for an UPDATE trigger.
    cte = "WITH n AS (INSERT INTO charts (id) VALUES (2) RETURNING id) SELECT * FROM n"
    assert "SO111" in rules_on(cte, 1, on_insert)
    on_update = _with_trigger(frozenset({"UPDATE"}))
    upsert = "INSERT INTO charts (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 1"
    assert "SO111" in rules_on(upsert, 1, on_update)
    # Quiet: another event, another table, another schema, a harmless body.
    assert by_line("UPDATE charts SET note = 'x' WHERE id = 1", on_insert) == {}
    assert by_line("INSERT INTO notes (id) VALUES (1)", on_insert) == {}
    assert by_line("INSERT INTO other.charts (id) VALUES (1)", on_insert) == {}
    audit = _with_trigger(frozenset({"INSERT"}), body="INSERT INTO log VALUES (now())")
    assert by_line("INSERT INTO charts (id) VALUES (1)", audit) == {}


def test_a_write_runs_the_calls_in_its_tables_defaults() -> None:
    stamp = CatalogFunction(
        "public",
        "stamp",
        "f",
        "sql",
        0,
        definition="CREATE OR REPLACE FUNCTION public.stamp()\n RETURNS text\n"
        " LANGUAGE sql\nAS $function$ DELETE FROM charts RETURNING 'x' $function$\n",
        arg_types=(),
    )
    facts = ServerFacts(
        functions=FunctionFacts(
            builtins=BUILTINS,
            functions=(stamp,),
            builtin_signatures=SIGNATURES,
            defaults=(
                CatalogDefault("public", "charts", "stamp()"),
                CatalogDefault("public", "charts", "nextval('charts_id_seq'::regclass)"),
            ),
        )
    )
    found = by_line("INSERT INTO charts (id) VALUES (1)", facts)
    assert [r for r, _ in found[1]] == ["SO111"], found
    assert found[1][0][1].startswith("in a DEFAULT of public.charts, inside function public.stamp")
    assert "SO111" in rules_on("UPDATE charts SET note = DEFAULT WHERE id = 1", 1, facts)
    assert by_line("DELETE FROM charts WHERE id = 1", facts) == {}  # evaluates no default
    assert by_line("INSERT INTO notes (id) VALUES (1)", facts) == {}


def test_a_read_of_a_catalog_view_runs_the_calls_in_its_definition() -> None:
    wipe = CatalogFunction(
        "public",
        "wipe",
        "f",
        "sql",
        0,
        definition="CREATE OR REPLACE FUNCTION public.wipe()\n RETURNS integer\n"
        " LANGUAGE sql\nAS $function$ DELETE FROM charts RETURNING 1 $function$\n",
        arg_types=(),
    )
    facts = ServerFacts(
        functions=FunctionFacts(
            builtins=BUILTINS,
            functions=(wipe,),
            builtin_signatures=SIGNATURES,
            views=(
                CatalogView("public", "v_wipe", " SELECT wipe() AS n;"),
                CatalogView("public", "v_over", " SELECT v_wipe.n FROM v_wipe;"),
                CatalogView("public", "v_count", " SELECT count(*) AS count FROM charts;"),
            ),
        )
    )
    found = by_line("SELECT * FROM v_wipe", facts)
    assert [r for r, _ in found[1]] == ["SO111"], found
    assert found[1][0][1].startswith("in view public.v_wipe, inside function public.wipe")
    assert "SO111" in rules_on("SELECT n FROM public.v_over", 1, facts)  # a view over it
    assert "SO111" in rules_on("CREATE TABLE copy AS SELECT * FROM v_wipe", 1, facts)
    assert by_line("SELECT * FROM v_count", facts) == {}
    assert by_line("COMMENT ON VIEW v_wipe IS 'x'", facts) == {}
