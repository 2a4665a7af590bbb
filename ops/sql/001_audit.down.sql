-- Undo 001_audit. The roles stay: they are cluster-wide and other databases may use them.
ALTER DEFAULT PRIVILEGES IN SCHEMA audit, public REVOKE SELECT ON TABLES FROM sophia_analytics;
REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM sophia_analytics;
REVOKE USAGE ON SCHEMA public FROM sophia_analytics;
DROP SCHEMA audit CASCADE;
