-- 002_analytics_login: the role analytics-mcp logs in as, with the least privilege its endpoint needs.
--
-- sophia_analytics_mcp inherits exactly what 001_audit granted the NOLOGIN group sophia_analytics: SELECT on the
-- audit and public schemas (tables there now and later). Nothing else: no other schema, no write, no predefined
-- role (server files, server programs, signalling other sessions, all data). It is created NOLOGIN and without a
-- password, so no secret is ever in a migration: whoever holds the secret enables it with
-- `ALTER ROLE sophia_analytics_mcp LOGIN PASSWORD '<SCRAM verifier>'` (the local platform at `sophia local up`;
-- on Neon the operator, or a role made with the Neon API). Its role-level settings are a floor that holds even if
-- a client forgets its own: read-only transactions, a statement timeout, short lock waits, a bounded idle
-- transaction, and few connections.
-- Attributes are not set here (NOSUPERUSER etc. are the defaults of CREATE ROLE, and only a superuser may name
-- them in ALTER ROLE); the verification file refuses a pre-existing role that has any of them.

-- A role made elsewhere (by a superuser, the Neon console) may not be ours to alter: then the settings and the
-- membership are left to whoever administers it, with a warning; the verification still requires the membership.
DO $$
BEGIN
    BEGIN
        CREATE ROLE sophia_analytics_mcp NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END;
    BEGIN
        ALTER ROLE sophia_analytics_mcp CONNECTION LIMIT 8;
        ALTER ROLE sophia_analytics_mcp SET default_transaction_read_only = on;
        ALTER ROLE sophia_analytics_mcp SET statement_timeout = '5s';
        ALTER ROLE sophia_analytics_mcp SET lock_timeout = '1s';
        ALTER ROLE sophia_analytics_mcp SET idle_in_transaction_session_timeout = '10s';
        GRANT sophia_analytics TO sophia_analytics_mcp;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'sophia_analytics_mcp is administered by another role: set its limits and membership there';
    END;
END
$$;
