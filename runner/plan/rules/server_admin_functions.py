"""SO611: functions that reconfigure or steer the server: reload, promote, replication slots."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._calls import calls_named
from runner.plan.rules.base import Context, StatementView, rule

_ADMIN_FUNCTIONS = frozenset(
    {
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_wal_replay_pause",
        "pg_wal_replay_resume",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_start_backup",
        "pg_stop_backup",
        "pg_create_physical_replication_slot",
        "pg_create_logical_replication_slot",
        "pg_drop_replication_slot",
        "pg_copy_physical_replication_slot",
        "pg_copy_logical_replication_slot",
        "pg_replication_slot_advance",
        "pg_logical_slot_get_changes",
        "pg_logical_slot_peek_changes",
        "pg_logical_slot_get_binary_changes",
        "pg_logical_slot_peek_binary_changes",
        "pg_logical_emit_message",
        "pg_replication_origin_create",
        "pg_replication_origin_drop",
        "pg_replication_origin_session_setup",
        "pg_replication_origin_advance",
        # The statistics monitoring and investigations read, wiped.
        "pg_stat_reset",
        "pg_stat_reset_shared",
        "pg_stat_reset_single_table_counters",
        "pg_stat_reset_single_function_counters",
        "pg_stat_reset_slru",
        "pg_stat_reset_replication_slot",
        "pg_stat_statements_reset",
    }
)


@rule(
    "SO611",
    "server-administration-function",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="pg_reload_conf, pg_promote, replication-slot functions...: steering the whole server.",
    rationale="""
        These act on the server, not the database a migration changes:
        pg_reload_conf() puts in force whatever postgresql.conf and
        postgresql.auto.conf (ALTER SYSTEM) now say, including authentication
        (pg_hba.conf) and logging; pg_promote turns a standby into a primary;
        dropping a replication slot breaks a replica or a change-data feed, and
        a logical slot read with pg_logical_slot_get_changes streams every row
        change of every table, PHI included, past grants and row-level
        security; pg_stat_reset and pg_stat_statements_reset wipe the record
        of what ran that monitoring and investigations read. Denied by default.
    """,
    safer="""
        Leave server configuration, failover and replication to the database's
        operators and their change process, outside the migration.
    """,
    triggers=[
        "SELECT pg_reload_conf()",
        "SELECT pg_catalog.pg_promote()",
        "SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)",
        "SELECT pg_drop_replication_slot('replica_1')",
        "SELECT pg_stat_statements_reset()",
    ],
    passes=[
        "SELECT slot_name FROM pg_replication_slots",
        "SELECT pg_current_wal_lsn()",
    ],
)
def server_admin_function(view: StatementView, context: Context) -> Iterator[str]:
    for call in calls_named(view, _ADMIN_FUNCTIONS):
        yield f"calls {call.name}(): acts on the whole server, not this database"
