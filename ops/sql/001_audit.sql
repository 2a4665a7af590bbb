-- 001_audit: the audit trail of deployment and service actions.
--
-- audit.events is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE, and every row carries a SHA-256 hash
-- that covers the previous row's hash, so editing, deleting or reordering rows (for instance by a superuser who
-- disables the trigger) breaks the chain and `sophia audit verify` reports it. Inserts are serialised on the single
-- row of audit.chain_head, which holds the newest sequence number and hash; keep audit inserts in short transactions.
--
-- Roles: sophia_audit_writer may only append (INSERT); sophia_analytics is read-only (SELECT on the audit and public
-- schemas, now and for tables created later by the migration owner).
-- The hash format is shared with sophia.db.audit.event_hash (Python) and pinned by 001_audit.verify.sql.

CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE audit.events (
    seq          bigint      PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor        text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    action       text        NOT NULL CHECK (length(action) BETWEEN 1 AND 200),
    target       text        NOT NULL DEFAULT '' CHECK (length(target) <= 500),
    payload      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    result       text        NOT NULL CHECK (result IN ('success', 'failure', 'denied', 'error')),
    request_id   text        CHECK (length(request_id) <= 200),
    prev_hash    text        NOT NULL,
    hash         text        NOT NULL
);

COMMENT ON TABLE audit.events IS 'Append-only, hash-chained audit trail; verify with `sophia audit verify`.';

CREATE TABLE audit.chain_head (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq       bigint  NOT NULL,
    hash      text    NOT NULL
);

INSERT INTO audit.chain_head (only_row, seq, hash) VALUES (true, 0, repeat('0', 64));

-- The dashboard lists recent events, filters by actor, target, action or request id, and shows what went wrong.
CREATE INDEX events_occurred_at_idx ON audit.events (occurred_at DESC);
CREATE INDEX events_actor_idx ON audit.events (actor, occurred_at DESC);
CREATE INDEX events_target_idx ON audit.events (target, occurred_at DESC);
CREATE INDEX events_action_idx ON audit.events (action, occurred_at DESC);
CREATE INDEX events_request_id_idx ON audit.events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX events_problems_idx ON audit.events (occurred_at DESC) WHERE result <> 'success';

-- Length-prefixed fields, newline-separated, so no two different rows hash the same text.
CREATE FUNCTION audit.event_hash(
    prev_hash text, seq bigint, occurred_at timestamptz, actor text, action text, target text,
    payload jsonb, result text, request_id text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog
AS $$
    SELECT encode(sha256(convert_to(concat_ws(E'\n',
        prev_hash,
        seq::text,
        to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        length(actor) || ':' || actor,
        length(action) || ':' || action,
        length(target) || ':' || target,
        length(payload::text) || ':' || payload::text,
        length(result) || ':' || result,
        coalesce(length(request_id) || ':' || request_id, '~')
    ), 'UTF8')), 'hex')
$$;

CREATE FUNCTION audit.chain_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, audit
AS $$
DECLARE
    head audit.chain_head%ROWTYPE;
BEGIN
    -- The row lock serialises appends: the next inserter waits here and then reads the new head.
    SELECT * INTO STRICT head FROM audit.chain_head WHERE only_row FOR UPDATE;
    NEW.seq := head.seq + 1;
    NEW.occurred_at := clock_timestamp();
    NEW.prev_hash := head.hash;
    NEW.hash := audit.event_hash(NEW.prev_hash, NEW.seq, NEW.occurred_at, NEW.actor, NEW.action, NEW.target,
                                 NEW.payload, NEW.result, NEW.request_id);
    UPDATE audit.chain_head SET seq = NEW.seq, hash = NEW.hash WHERE only_row;
    RETURN NEW;
END
$$;

CREATE FUNCTION audit.forbid_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
BEGIN
    RAISE EXCEPTION 'audit.% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- The head may only move inside chain_event (trigger depth 2), never by a direct statement.
CREATE FUNCTION audit.guard_head() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
BEGIN
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'audit.chain_head moves only when an event is appended'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_chain BEFORE INSERT ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.chain_event();
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON audit.events
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER chain_head_guard BEFORE INSERT OR UPDATE OR DELETE ON audit.chain_head
    FOR EACH ROW EXECUTE FUNCTION audit.guard_head();
CREATE TRIGGER chain_head_no_truncate BEFORE TRUNCATE ON audit.chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();

-- Roles are cluster-wide and may already exist (another database, an earlier run, a concurrent migration).
DO $$
BEGIN
    BEGIN
        CREATE ROLE sophia_analytics NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END;
    BEGIN
        CREATE ROLE sophia_audit_writer NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.chain_event(), audit.forbid_change(), audit.guard_head() FROM PUBLIC;

GRANT USAGE ON SCHEMA audit TO sophia_audit_writer, sophia_analytics;
GRANT INSERT, SELECT ON audit.events TO sophia_audit_writer;

GRANT USAGE ON SCHEMA public TO sophia_analytics;
GRANT SELECT ON ALL TABLES IN SCHEMA audit, public TO sophia_analytics;
ALTER DEFAULT PRIVILEGES IN SCHEMA audit, public GRANT SELECT ON TABLES TO sophia_analytics;
