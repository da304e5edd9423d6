"""runner.plan.source against the real sample alembic project (no database)."""

from __future__ import annotations

import io
import itertools
import logging
import re
import shutil
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from runner.errors import SourceError
from runner.plan.source import (
    RevisionInfo,
    RevisionSQL,
    load_script,
    offline_sql,
    pending_revisions,
)

SAMPLE = Path(__file__).resolve().parents[2] / "sample_migrations"
SAMPLE_INI = SAMPLE / "alembic.ini"

# The sample project's revisions, oldest first.
REVISIONS = [
    "0d5b4ef5d34c",  # create clinicians and patients
    "c2b722edb006",  # create encounters (+ encounter_status enum)
    "bc06db019257",  # create observations
    "fc7bad4eb6f3",  # backfill: lower-case patient emails
    "9e68476d999a",  # index observations.encounter_id (not concurrently)
    "7dc6e57d7249",  # index encounters concurrently, autocommit block
    "c5289cc231f5",  # rename patients.phone -> phone_number
    "9df3a2e08a87",  # encounters.clinician_id SET NOT NULL
    "3213fa000745",  # FK encounters.clinician_id -> clinicians
    "159bd3e0d7b6",  # ALTER TYPE encounter_status ADD VALUE 'cancelled'
    "be942846c0a5",  # drop patients.ssn
]
FIRST, LAST = REVISIONS[0], REVISIONS[-1]

# A statement only the given revision emits.
OWN_STATEMENT = {
    "0d5b4ef5d34c": "CREATE TABLE patients (",
    "c2b722edb006": "CREATE TYPE encounter_status AS ENUM ('planned', 'in_progress', 'finished');",
    "bc06db019257": "CREATE TABLE observations (",
    "fc7bad4eb6f3": "UPDATE patients SET email = lower(email)",
    "9e68476d999a": "CREATE INDEX ix_observations_encounter_id ON observations (encounter_id);",
    "7dc6e57d7249": "CREATE INDEX CONCURRENTLY ix_encounters_patient_id_started_at",
    "c5289cc231f5": "ALTER TABLE patients RENAME phone TO phone_number;",
    "9df3a2e08a87": "ALTER TABLE encounters ALTER COLUMN clinician_id SET NOT NULL;",
    "3213fa000745": "ADD CONSTRAINT fk_encounters_clinician_id_clinicians FOREIGN KEY",
    "159bd3e0d7b6": "ALTER TYPE encounter_status ADD VALUE 'cancelled';",
    "be942846c0a5": "ALTER TABLE patients DROP COLUMN ssn;",
}


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sample env.py falls back to this variable; these tests need no database.
    monkeypatch.delenv("SIGNOFF_DATABASE_URL", raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A private copy of the sample project; returns its alembic.ini."""
    root = tmp_path / "migrations"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root / "alembic.ini"


def _revision_file(ini: Path, rev: str) -> Path:
    (path,) = (ini.parent / "versions").glob(f"*{rev}_*.py")
    return path


def _add_revision(ini: Path, rev: str, down: str | tuple[str, ...], body: str = "pass") -> Path:
    path = ini.parent / "versions" / f"{rev}_extra.py"
    path.write_text(
        f'"""extra {rev}"""\n'
        "from alembic import op\n\n"
        f"revision = {rev!r}\n"
        f"down_revision = {down!r}\n"
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        f"def upgrade():\n    {body}\n\n\n"
        "def downgrade():\n    pass\n"
    )
    return path


def _alembic_sql(ini: Path, revision: str) -> str:
    """What `alembic upgrade <revision> --sql` writes, via alembic's own command."""
    buffer = io.StringIO()
    config = Config(str(ini), output_buffer=buffer)
    config.attributes["configure_logger"] = False
    command.upgrade(config, revision, sql=True)
    return buffer.getvalue()


def _source_error(excinfo: pytest.ExceptionInfo[SourceError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


# --------------------------------------------------------------------------- the sample


def test_sample_yields_every_revision_in_order() -> None:
    result = offline_sql(SAMPLE_INI, current=())

    assert 8 <= len(result) <= 12
    assert [r.revision.id for r in result] == REVISIONS
    assert all(isinstance(r, RevisionSQL) for r in result)
    assert all(re.fullmatch(r"[0-9a-f]{12}", r.revision.id) for r in result)
    assert result[0].revision.down_revisions == ()
    for older, newer in itertools.pairwise(result):
        assert newer.revision.down_revisions == (older.revision.id,)
    for r in result:
        # relative to the working directory (the repository root in CI), else to
        # the script directory
        real = next((SAMPLE / "versions").glob(f"*{r.revision.id}*.py")).resolve()
        assert real in (
            (Path.cwd() / r.revision.path).resolve(),
            (SAMPLE / r.revision.path).resolve(),
        )
        assert r.revision.id in r.revision.path
    assert result[0].revision.message == "create clinicians and patients"
    assert result[-1].revision.message == "drop patients.ssn"


def test_each_revision_holds_its_own_statements() -> None:
    result = offline_sql(SAMPLE_INI, current=())

    for r in result:
        own = OWN_STATEMENT[r.revision.id]
        assert own in r.sql, r.revision.id
        others = [x for x in result if x is not r]
        assert not any(own in x.sql for x in others), own
        down = ", ".join(r.revision.down_revisions)
        assert f"-- Running upgrade {down} -> {r.revision.id}\n" in r.sql
        assert r.sql.count("-- Running upgrade") == 1


def test_each_revision_is_its_own_transaction() -> None:
    result = offline_sql(SAMPLE_INI, current=())

    for r in result:
        assert r.sql.startswith("BEGIN;\n\n"), r.revision.id
        assert r.sql.endswith("COMMIT;\n\n"), r.revision.id
    # Only the first (from base) creates the version table.
    assert "CREATE TABLE alembic_version" in result[0].sql
    assert all("CREATE TABLE alembic_version" not in r.sql for r in result[1:])
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{FIRST}')" in result[0].sql
    assert (
        f"UPDATE alembic_version SET version_num='{LAST}' "
        f"WHERE alembic_version.version_num = '{REVISIONS[-2]}';"
    ) in result[-1].sql


def test_output_is_exactly_what_alembic_upgrade_sql_writes() -> None:
    result = offline_sql(SAMPLE_INI, current=())

    assert "".join(r.sql for r in result) == _alembic_sql(SAMPLE_INI, "heads")


def test_concurrent_index_sits_in_an_autocommit_gap() -> None:
    by_id = {r.revision.id: r.sql for r in offline_sql(SAMPLE_INI, current=())}

    sql = by_id["7dc6e57d7249"]
    index = sql.index("CREATE INDEX CONCURRENTLY ix_encounters_patient_id_started_at")
    assert sql.rfind("COMMIT;", 0, index) > sql.index("-- Running upgrade")
    assert sql.find("BEGIN;", index) > index
    assert (
        "COMMIT;\n\nCREATE INDEX CONCURRENTLY ix_encounters_patient_id_started_at "
        "ON encounters (patient_id, started_at);\n\nBEGIN;\n\n"
    ) in sql

    enum = by_id["159bd3e0d7b6"]
    assert "COMMIT;\n\nALTER TYPE encounter_status ADD VALUE 'cancelled';\n\nBEGIN;\n\n" in enum

    destructive = by_id[LAST]
    assert "DROP COLUMN ssn" in destructive


def test_pending_revisions_matches_offline_sql() -> None:
    script = load_script(SAMPLE_INI)

    pending = pending_revisions(script, current=())

    assert all(isinstance(r, RevisionInfo) for r in pending)
    assert pending == [r.revision for r in offline_sql(SAMPLE_INI, current=())]


def test_from_to_range() -> None:
    result = offline_sql(SAMPLE_INI, current=("fc7bad4eb6f3",), target="3213fa000745")

    assert [r.revision.id for r in result] == REVISIONS[4:9]
    assert "CREATE TABLE alembic_version" not in result[0].sql
    assert result[0].sql.startswith("BEGIN;\n\n-- Running upgrade fc7bad4eb6f3 -> 9e68476d999a")
    assert "WHERE alembic_version.version_num = 'fc7bad4eb6f3'" in result[0].sql
    assert "".join(r.sql for r in result) == _alembic_sql(SAMPLE_INI, "fc7bad4eb6f3:3213fa000745")


def test_base_to_first_revision_and_head_alias() -> None:
    assert [r.revision.id for r in offline_sql(SAMPLE_INI, current=(), target=FIRST)] == [FIRST]
    script = load_script(SAMPLE_INI)
    assert [r.id for r in pending_revisions(script, current=(REVISIONS[-3],), target="head")] == (
        REVISIONS[-2:]
    )


def test_short_revision_prefix_is_resolved() -> None:
    result = offline_sql(SAMPLE_INI, current=(REVISIONS[-2][:6],))

    assert [r.revision.id for r in result] == [LAST]


def test_at_head_nothing_is_pending() -> None:
    script = load_script(SAMPLE_INI)

    assert pending_revisions(script, current=(LAST,)) == []
    assert offline_sql(SAMPLE_INI, current=(LAST,)) == []
    assert offline_sql(SAMPLE_INI, current=(LAST,), target=LAST) == []


def test_offline_sql_needs_no_database_url() -> None:
    # No -x url, no SIGNOFF_DATABASE_URL, no sqlalchemy.url: env.py falls back
    # to the PostgreSQL dialect and alembic never connects.
    result = offline_sql(SAMPLE_INI, current=(), url=None)

    assert len(result) == len(REVISIONS)


def test_offline_sql_with_unreachable_url_never_connects() -> None:
    url = "postgresql://ehr:hunter2@192.0.2.1:1/ehr"  # TEST-NET-1: nothing answers

    result = offline_sql(SAMPLE_INI, current=(REVISIONS[-2],), url=url)

    assert [r.revision.id for r in result] == [LAST]


def test_url_reaches_env_py_as_x_argument_and_main_option(project: Path) -> None:
    env = project.parent / "env.py"
    env.write_text(
        env.read_text().replace(
            "    url = database_url() or OFFLINE_FALLBACK_URL\n",
            "    url = database_url() or OFFLINE_FALLBACK_URL\n"
            "    x_url = context.get_x_argument(as_dictionary=True).get('url')\n"
            "    ini_url = config.get_main_option('sqlalchemy.url')\n"
            "    assert x_url == ini_url == url, (x_url, ini_url, url)\n",
        )
    )
    url = "postgresql+psycopg://ehr:p%40ss@db.example:5433/ehr?sslmode=require"

    result = offline_sql(project, current=(REVISIONS[-2],), url=url)

    assert [r.revision.id for r in result] == [LAST]


def test_offline_sql_leaves_logging_alone(project: Path) -> None:
    # An env.py that configures logging unconditionally (alembic's template does).
    env = project.parent / "env.py"
    env.write_text(
        env.read_text()
        .replace('config.attributes.get("configure_logger", True)', "True")
        .replace("disable_existing_loggers=False", "disable_existing_loggers=True")
    )
    mine = logging.getLogger("runner.test_source.mine")
    mine.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level

    offline_sql(project, current=(REVISIONS[-2],))

    assert not mine.disabled
    assert mine.level == logging.DEBUG
    assert root.handlers == root_handlers
    assert root.level == root_level


# --------------------------------------------------------------------------- merges and branches


def test_merge_revision_on_a_linear_path(project: Path) -> None:
    _add_revision(project, "aaaa00000001", LAST, "op.execute(\"SELECT 'a'\")")
    _add_revision(project, "bbbb00000002", LAST, "op.execute(\"SELECT 'b'\")")
    _add_revision(project, "cccc00000003", ("aaaa00000001", "bbbb00000002"))

    result = offline_sql(project, current=(LAST,))

    ids = [r.revision.id for r in result]
    assert sorted(ids[:2]) == ["aaaa00000001", "bbbb00000002"]
    assert ids[2] == "cccc00000003"
    merge = result[2]
    assert merge.revision.down_revisions == ("aaaa00000001", "bbbb00000002")
    assert "-- Running upgrade aaaa00000001, bbbb00000002 -> cccc00000003" in merge.sql
    assert "DELETE FROM alembic_version" in merge.sql
    assert "".join(r.sql for r in result) == _alembic_sql(project, f"{LAST}:heads")

    # From both branch heads only the merge is left.
    both = offline_sql(project, current=("bbbb00000002", "aaaa00000001"))
    assert [r.revision.id for r in both] == ["cccc00000003"]
    assert both[0].sql.startswith("BEGIN;\n\n-- Running upgrade aaaa00000001, bbbb00000002")


def test_multiple_heads_are_refused_unless_a_target_is_given(project: Path) -> None:
    _add_revision(project, "aaaa00000001", LAST)
    _add_revision(project, "bbbb00000002", LAST)
    script = load_script(project)

    for target in ("heads", "head"):
        with pytest.raises(SourceError) as excinfo:
            pending_revisions(script, current=(LAST,), target=target)
        assert _source_error(excinfo) == (
            "multiple heads aaaa00000001, bbbb00000002: merge them with "
            "`alembic merge heads` or pass --to REV"
        )
    with pytest.raises(SourceError, match="multiple heads aaaa00000001, bbbb00000002"):
        offline_sql(project, current=(LAST,))

    chosen = offline_sql(project, current=(LAST,), target="bbbb00000002")
    assert [r.revision.id for r in chosen] == ["bbbb00000002"]


def test_sibling_branch_is_applied_as_alembic_does(project: Path) -> None:
    # Current is not an ancestor of the target, but alembic can upgrade:
    # the target's branch is applied next to the current one.
    _add_revision(project, "aaaa00000001", LAST)
    _add_revision(project, "bbbb00000002", LAST)

    result = offline_sql(project, current=("aaaa00000001",), target="bbbb00000002")

    assert [r.revision.id for r in result] == ["bbbb00000002"]
    assert "INSERT INTO alembic_version (version_num) VALUES ('bbbb00000002')" in result[0].sql


def test_target_behind_current_is_refused() -> None:
    script = load_script(SAMPLE_INI)

    with pytest.raises(SourceError) as excinfo:
        pending_revisions(script, current=(LAST,), target=FIRST)

    message = _source_error(excinfo)
    assert message.startswith(f"the database is at {LAST}, which is already past {FIRST}")
    assert "signoff does not downgrade" in message
    with pytest.raises(SourceError, match=f"the database is at {LAST}, which is already past base"):
        offline_sql(SAMPLE_INI, current=(LAST,), target="base")
    assert offline_sql(SAMPLE_INI, current=(), target="base") == []


# --------------------------------------------------------------------------- errors


def test_missing_alembic_ini(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "alembic.ini"

    with pytest.raises(SourceError) as excinfo:
        load_script(missing)

    assert _source_error(excinfo) == (
        f"{missing} does not exist: pass --alembic-ini with the path of your project's alembic.ini"
    )
    with pytest.raises(SourceError, match="does not exist"):
        offline_sql(missing, current=())
    with pytest.raises(SourceError, match="is a directory"):
        load_script(tmp_path)


def test_alembic_ini_without_script_location(project: Path) -> None:
    text = project.read_text()
    project.write_text(re.sub(r"(?m)^script_location = .*$", "", text))

    with pytest.raises(SourceError) as excinfo:
        load_script(project)

    message = _source_error(excinfo)
    assert message.startswith(f"{project}: no script_location in its [alembic] section")
    assert "add `script_location = " in message


def test_script_location_that_does_not_exist(project: Path) -> None:
    text = project.read_text()
    project.write_text(
        text.replace("script_location = %(here)s", "script_location = %(here)s/gone")
    )

    with pytest.raises(SourceError) as excinfo:
        load_script(project)

    message = _source_error(excinfo)
    assert str(project) in message
    assert "fix script_location" in message


def test_revision_with_syntax_error_is_named(project: Path) -> None:
    broken = _revision_file(project, "c5289cc231f5")
    broken.write_text(broken.read_text().replace("def upgrade() -> None:", "def upgrade( -> None:"))

    with pytest.raises(SourceError) as excinfo:
        load_script(project)

    message = _source_error(excinfo)
    assert re.search(rf"versions/{re.escape(broken.name)} line \d+: syntax error \(", message)
    assert message.endswith("; fix the file")
    with pytest.raises(SourceError, match=re.escape(broken.name)):
        offline_sql(project, current=())


def test_revision_with_import_error_is_named(project: Path) -> None:
    broken = _revision_file(project, "9e68476d999a")
    broken.write_text(
        broken.read_text().replace("from alembic import op", "from alembic import opp")
    )

    with pytest.raises(SourceError) as excinfo:
        load_script(project)

    message = _source_error(excinfo)
    assert f"versions/{broken.name} line " in message
    assert "cannot import it (ImportError: cannot import name 'opp'" in message


def test_revision_failing_during_offline_run_is_named(project: Path) -> None:
    broken = _revision_file(project, LAST)
    broken.write_text(
        broken.read_text().replace(
            '    op.drop_column("patients", "ssn")', "    raise KeyError('ssn')"
        )
    )

    with pytest.raises(SourceError) as excinfo:
        offline_sql(project, current=(REVISIONS[-2],))

    message = _source_error(excinfo)
    assert f"versions/{broken.name} line " in message
    assert "KeyError" in message


def test_broken_down_revision_graph(project: Path) -> None:
    _add_revision(project, "dddd00000004", "ffffffffffff")

    with pytest.raises(SourceError) as excinfo:
        load_script(project)

    message = _source_error(excinfo)
    assert message.startswith(
        "revision dddd00000004 names down_revision ffffffffffff, which is not in "
    )
    assert "fix down_revision in that revision file" in message


def test_unknown_current_revision() -> None:
    script = load_script(SAMPLE_INI)

    with pytest.raises(SourceError) as excinfo:
        pending_revisions(script, current=("abc",))

    message = _source_error(excinfo)
    assert message.startswith(
        "unknown revision 'abc' (from the database's alembic_version / --from): "
    )
    assert "check out the branch that has it" in message
    with pytest.raises(SourceError, match="unknown revision 'abc' "):
        offline_sql(SAMPLE_INI, current=("abc",))


def test_unknown_target_revision() -> None:
    with pytest.raises(SourceError) as excinfo:
        offline_sql(SAMPLE_INI, current=(), target="0123456789ab")

    message = _source_error(excinfo)
    assert message.startswith("unknown revision '0123456789ab' (--to): ")
    assert "`alembic history`" in message


def test_env_py_error_never_shows_the_password(project: Path) -> None:
    env = project.parent / "env.py"
    env.write_text(
        env.read_text().replace(
            "    url = database_url() or OFFLINE_FALLBACK_URL\n",
            "    url = database_url() or OFFLINE_FALLBACK_URL\n"
            "    raise RuntimeError(f'cannot use {url}')\n",
        )
    )
    url = "postgresql://ehr:Sup3r%2Fsecret@db.internal:5432/ehr"

    with pytest.raises(SourceError) as excinfo:
        offline_sql(project, current=(), url=url)

    message = _source_error(excinfo)
    assert message.startswith(f"{project.parent / 'env.py'}: failed in alembic offline mode")
    assert "RuntimeError: cannot use postgresql://ehr:***@db.internal:5432/ehr" in message
    assert "Sup3r" not in message
    assert "secret" not in message


def test_env_py_that_runs_migrations_twice_is_refused(project: Path) -> None:
    env = project.parent / "env.py"
    env.write_text(
        env.read_text().replace(
            "    with context.begin_transaction():\n        context.run_migrations()\n\n\n"
            "def run_migrations_online",
            "    with context.begin_transaction():\n        context.run_migrations()\n"
            "        context.run_migrations()\n\n\ndef run_migrations_online",
        )
    )

    with pytest.raises(SourceError) as excinfo:
        offline_sql(project, current=(REVISIONS[-2],))

    assert "runs the migrations more than once" in _source_error(excinfo)


def test_env_py_that_never_runs_migrations_is_refused(project: Path) -> None:
    env = project.parent / "env.py"
    env.write_text(
        env.read_text().replace(
            "if context.is_offline_mode():\n    run_migrations_offline()",
            "if context.is_offline_mode():\n    pass",
        )
    )

    with pytest.raises(SourceError) as excinfo:
        offline_sql(project, current=(REVISIONS[-2],))

    assert "never called context.run_migrations() in offline mode" in _source_error(excinfo)


def test_env_py_with_one_transaction_for_all_revisions(project: Path) -> None:
    # alembic's generic env.py: no transaction_per_migration, one BEGIN ... COMMIT.
    env = project.parent / "env.py"
    text = env.read_text()
    offline_part, online_part = text.split("def run_migrations_online")
    offline_part = offline_part.replace("        transaction_per_migration=True,\n", "")
    env.write_text(offline_part + "def run_migrations_online" + online_part)

    result = offline_sql(project, current=())

    assert [r.revision.id for r in result] == REVISIONS
    assert "".join(r.sql for r in result) == _alembic_sql(project, "heads")
    assert result[0].sql.startswith("BEGIN;\n\nCREATE TABLE alembic_version")
    assert "COMMIT;" not in result[0].sql
    assert result[1].sql.startswith("-- Running upgrade 0d5b4ef5d34c -> c2b722edb006\n\n")
    assert result[-1].sql.endswith("COMMIT;\n\n")
    assert sum(r.sql.count("BEGIN;") for r in result) == 3  # outer + two autocommit blocks


def test_malformed_alembic_ini(project: Path) -> None:
    project.write_text("this is not an ini file\n")

    with pytest.raises(SourceError) as excinfo:
        load_script(project)

    message = _source_error(excinfo)
    assert message.startswith(f"{project}: cannot read it (")
    assert message.endswith("; fix the ini syntax")
