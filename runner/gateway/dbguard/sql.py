"""The guard's SQL: what ``signoff gateway install-guard`` runs, in one transaction.

Everything lives in the schema ``signoff_guard``, owned by the role that installs it;
PUBLIC has no privilege on the schema, its tables or its functions. The functions
the database calls (event triggers, the TRUNCATE trigger) are SECURITY DEFINER with a
fixed search_path, so the session's upstream role needs no access to anything here.

* ``granted(backend_pid, backend_start, nonce, query_sha256, set_at)``: the marks. The
  gateway writes one (through ``mark``, over its own admin connection) just before it
  forwards a statement it decided may have a destructive effect, and deletes it
  (``unmark``) once the statement has answered. A mark holds only for that backend
  (pid and start time: a reused pid is another backend) and only while the backend
  runs that very text (``current_query()`` hashed): a statement pipelined behind the
  granted one is not covered by its mark.
* ``created(backend_pid, backend_start, classid, objid)``: what each backend created.
  The analysis lets a session drop what it created itself; the guard does the same,
  for the backend that created it.
* event triggers: ``sql_drop`` (every dropped object, columns included),
  ``table_rewrite`` (ALTER COLUMN TYPE), ``ddl_command_end`` (notes what a marked
  statement did, adds the TRUNCATE trigger to new tables, keeps the guard's
  triggers enabled); a ``BEFORE TRUNCATE`` statement trigger on every table.
* A refusal is SQLSTATE 42501 with a message naming the guard and the object. What a
  marked statement did is sent as a NOTICE whose message carries the mark's nonce
  (which sessions cannot read); the gateway takes those notices out of the stream
  and records them in the statement's outcome (``nested``). A table could not do
  that: its rows are invisible to the gateway until the session commits.
"""

from __future__ import annotations

GUARD_VERSION = 1
SCHEMA = "signoff_guard"
STAMP = f"signoff guard {GUARD_VERSION}"
NOTICE_PREFIX = "signoff-guard "
EVENT_TRIGGERS = (
    "signoff_guard_sql_drop",
    "signoff_guard_table_rewrite",
    "signoff_guard_ddl_end",
)
TRUNCATE_TRIGGER = "signoff_guard_truncate"

# The kinds of dropped object whose loss is a loss of data (the planner's destructive
# rules: tables, columns, sequences, schemas, types, extensions).
_GUARDED_KINDS = (
    "'table', 'table column', 'sequence', 'schema', 'type', 'extension', "
    "'materialized view', 'foreign table'"
)

INSTALL = f"""
CREATE SCHEMA IF NOT EXISTS signoff_guard;
REVOKE ALL ON SCHEMA signoff_guard FROM PUBLIC;
COMMENT ON SCHEMA signoff_guard IS '{STAMP}';

CREATE TABLE IF NOT EXISTS signoff_guard.granted (
    backend_pid integer NOT NULL,
    backend_start timestamptz NOT NULL,
    nonce text NOT NULL,
    query_sha256 text NOT NULL,
    set_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (backend_pid, nonce)
);
CREATE TABLE IF NOT EXISTS signoff_guard.created (
    backend_pid integer NOT NULL,
    backend_start timestamptz NOT NULL,
    classid oid NOT NULL,
    objid oid NOT NULL,
    PRIMARY KEY (backend_pid, classid, objid)
);
REVOKE ALL ON ALL TABLES IN SCHEMA signoff_guard FROM PUBLIC;

-- This backend's start time: with the pid, it names one backend (pids are reused).
CREATE OR REPLACE FUNCTION signoff_guard.backend_start() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.backend_start FROM pg_stat_get_activity(pg_backend_pid()) a
$$;

-- The nonce of the mark that covers the statement running now, or NULL.
CREATE OR REPLACE FUNCTION signoff_guard.current_nonce() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.nonce FROM signoff_guard.granted g
     WHERE g.backend_pid = pg_backend_pid()
       AND g.backend_start = signoff_guard.backend_start()
       AND g.query_sha256 = encode(sha256(convert_to(current_query(), 'UTF8')), 'hex')
     ORDER BY g.set_at DESC LIMIT 1
$$;

-- The gateway's calls (its admin connection): set and clear a mark for a backend.
CREATE OR REPLACE FUNCTION signoff_guard.mark(pid integer, nonce text, query_sha256 text)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO signoff_guard.granted (backend_pid, backend_start, nonce, query_sha256)
    SELECT a.pid, a.backend_start, mark.nonce, mark.query_sha256
      FROM pg_stat_get_activity(mark.pid) a
     WHERE a.backend_start IS NOT NULL
    RETURNING true
$$;
CREATE OR REPLACE FUNCTION signoff_guard.unmark(pid integer, nonces text[]) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM signoff_guard.granted g
     WHERE (g.backend_pid = unmark.pid AND g.nonce = ANY (unmark.nonces))
        OR NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(g.backend_pid) a
                        WHERE a.backend_start = g.backend_start)
$$;

-- Whether this backend created the object itself (the analysis's "new in this session").
CREATE OR REPLACE FUNCTION signoff_guard.created_here(cls oid, obj oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM signoff_guard.created c
                    WHERE c.backend_pid = pg_backend_pid() AND c.classid = cls
                      AND c.objid = obj AND c.backend_start = signoff_guard.backend_start())
$$;

-- What a marked statement did, for the gateway (its notice never reaches the client).
-- client_min_messages is set here so a session cannot silence it.
CREATE OR REPLACE FUNCTION signoff_guard.note(nonce text, tag text, kind text, identity text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET client_min_messages = notice AS $$
BEGIN
    RAISE NOTICE USING MESSAGE = '{NOTICE_PREFIX}' || nonce,
        DETAIL = json_build_object('tag', tag, 'type', kind, 'identity', identity)::text;
END
$$;

CREATE OR REPLACE FUNCTION signoff_guard.refuse(what text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = '42501',
        MESSAGE = 'signoff guard refused ' || what
            || ': the gateway did not mark this statement as approved',
        HINT = 'run it through the gateway with an approval (an approved plan or '
            || '`signoff gateway grant`)';
END
$$;

CREATE OR REPLACE FUNCTION signoff_guard.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    nonce text := signoff_guard.current_nonce();
    obj record;
BEGIN
    FOR obj IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
        IF obj.object_type = 'trigger' AND obj.original
           AND obj.address_names[3] = '{TRUNCATE_TRIGGER}' THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = 'signoff guard refused ' || tg_tag || ' of ' || obj.object_identity
                    || ': the guard''s own trigger stays (signoff gateway uninstall-guard '
                    || 'removes it)';
        END IF;
        CONTINUE WHEN NOT (obj.original OR obj.normal) OR obj.is_temporary;
        IF nonce IS NOT NULL THEN
            PERFORM signoff_guard.note(nonce, tg_tag, obj.object_type, obj.object_identity);
            CONTINUE;
        END IF;
        CONTINUE WHEN obj.object_type NOT IN ({_GUARDED_KINDS});
        CONTINUE WHEN signoff_guard.created_here(obj.classid, obj.objid);
        PERFORM signoff_guard.refuse(tg_tag || ' of ' || obj.object_type || ' '
                                     || obj.object_identity);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION signoff_guard.on_table_rewrite() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    nonce text := signoff_guard.current_nonce();
    rel oid := pg_event_trigger_table_rewrite_oid();
    persistence "char";
BEGIN
    IF nonce IS NOT NULL THEN
        PERFORM signoff_guard.note(nonce, tg_tag, 'table rewrite', rel::regclass::text);
        RETURN;
    END IF;
    -- Only a column type change can lose data (ADD COLUMN with a volatile default,
    -- SET LOGGED, SET ACCESS METHOD rewrite without loss).
    IF pg_event_trigger_table_rewrite_reason() & 4 = 0 THEN
        RETURN;
    END IF;
    SELECT c.relpersistence INTO persistence FROM pg_class c WHERE c.oid = rel;
    IF persistence = 't' OR signoff_guard.created_here('pg_class'::regclass, rel) THEN
        RETURN;
    END IF;
    PERFORM signoff_guard.refuse(tg_tag || ' rewriting table ' || rel::regclass::text
                                 || ' (a column type change)');
END
$$;

CREATE OR REPLACE FUNCTION signoff_guard.on_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    nonce text := signoff_guard.current_nonce();
    name text := quote_ident(tg_table_schema) || '.' || quote_ident(tg_table_name);
BEGIN
    IF nonce IS NOT NULL THEN
        PERFORM signoff_guard.note(nonce, 'TRUNCATE', 'table', name);
    ELSIF NOT signoff_guard.created_here('pg_class'::regclass, tg_relid) THEN
        PERFORM signoff_guard.refuse('TRUNCATE of table ' || name);
    END IF;
    RETURN NULL;
END
$$;

-- The TRUNCATE trigger on one table (a table of the database's users).
CREATE OR REPLACE FUNCTION signoff_guard.protect(rel oid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = rel
                    AND t.tgfoid = 'signoff_guard.on_truncate()'::regprocedure) THEN
        EXECUTE format('CREATE TRIGGER {TRUNCATE_TRIGGER} BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION signoff_guard.on_truncate()',
                       rel::regclass);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION signoff_guard.on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    nonce text := signoff_guard.current_nonce();
    cmd record;
    kind "char";
    persistence "char";
BEGIN
    FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        IF nonce IS NOT NULL THEN
            PERFORM signoff_guard.note(nonce, cmd.command_tag, cmd.object_type,
                                       cmd.object_identity);
        END IF;
        CONTINUE WHEN cmd.objid IS NULL OR cmd.objid = 0;
        IF cmd.command_tag LIKE 'CREATE %' OR cmd.command_tag = 'SELECT INTO' THEN
            INSERT INTO signoff_guard.created (backend_pid, backend_start, classid, objid)
            VALUES (pg_backend_pid(), signoff_guard.backend_start(), cmd.classid, cmd.objid)
            ON CONFLICT DO NOTHING;
        END IF;
        CONTINUE WHEN cmd.classid <> 'pg_class'::regclass;
        SELECT c.relkind, c.relpersistence INTO kind, persistence
          FROM pg_class c WHERE c.oid = cmd.objid;
        CONTINUE WHEN kind IS NULL OR kind NOT IN ('r', 'p') OR persistence = 't';
        IF cmd.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO') THEN
            PERFORM signoff_guard.protect(cmd.objid);
        ELSIF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = cmd.objid
                       AND t.tgfoid = 'signoff_guard.on_truncate()'::regprocedure
                       AND t.tgenabled NOT IN ('O', 'A')) THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = 'signoff guard refused ' || cmd.command_tag || ' of '
                    || cmd.object_identity || ': the guard''s TRUNCATE trigger stays enabled';
        END IF;
    END LOOP;
    -- Forget what backends that have ended created (skipping rows another backend is
    -- busy with: no session ever waits on another here).
    DELETE FROM signoff_guard.created c WHERE c.ctid IN (
        SELECT s.ctid FROM signoff_guard.created s
         WHERE NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(s.backend_pid) a
                            WHERE a.backend_start = s.backend_start)
         FOR UPDATE SKIP LOCKED);
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA signoff_guard FROM PUBLIC;

DROP EVENT TRIGGER IF EXISTS signoff_guard_sql_drop;
DROP EVENT TRIGGER IF EXISTS signoff_guard_table_rewrite;
DROP EVENT TRIGGER IF EXISTS signoff_guard_ddl_end;
CREATE EVENT TRIGGER signoff_guard_sql_drop ON sql_drop
    EXECUTE FUNCTION signoff_guard.on_sql_drop();
CREATE EVENT TRIGGER signoff_guard_table_rewrite ON table_rewrite
    EXECUTE FUNCTION signoff_guard.on_table_rewrite();
CREATE EVENT TRIGGER signoff_guard_ddl_end ON ddl_command_end
    EXECUTE FUNCTION signoff_guard.on_ddl_end();

-- Every table of the database's users has the TRUNCATE trigger (new ones get it
-- from on_ddl_end).
SELECT signoff_guard.protect(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'signoff_guard')
   AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e');
"""

GRANT_TO_MARKER = """
GRANT USAGE ON SCHEMA signoff_guard TO {role};
GRANT EXECUTE ON FUNCTION signoff_guard.mark(integer, text, text) TO {role};
GRANT EXECUTE ON FUNCTION signoff_guard.unmark(integer, text[]) TO {role};
"""

UNINSTALL = f"""
DROP EVENT TRIGGER IF EXISTS signoff_guard_sql_drop;
DROP EVENT TRIGGER IF EXISTS signoff_guard_table_rewrite;
DROP EVENT TRIGGER IF EXISTS signoff_guard_ddl_end;
DO $$
DECLARE t record;
BEGIN
    IF to_regprocedure('signoff_guard.on_truncate()') IS NULL THEN
        RETURN;
    END IF;
    FOR t IN SELECT tg.tgname, tg.tgrelid FROM pg_trigger tg
              WHERE tg.tgfoid = 'signoff_guard.on_truncate()'::regprocedure LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass);
    END LOOP;
END
$$;
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
"""

# What anyone may read (the catalog): is the guard there, which version, and are its
# event triggers enabled.
STATUS = """
SELECT obj_description(n.oid, 'pg_namespace'),
       (SELECT count(*) FROM pg_event_trigger e
         WHERE e.evtname = ANY (%s) AND e.evtenabled <> 'D'),
       r.rolsuper, r.rolbypassrls, current_user
  FROM pg_roles r LEFT JOIN pg_namespace n ON n.nspname = 'signoff_guard'
 WHERE r.rolname = current_user
"""
