-- Run after 001_audit is applied (inside its transaction, rolled back): each query must return true.
SELECT to_regclass('audit.events') IS NOT NULL AND to_regclass('audit.chain_head') IS NOT NULL;

SELECT count(*) = 5 FROM pg_trigger
 WHERE NOT tgisinternal AND tgenabled IN ('O', 'A')
   AND tgrelid IN ('audit.events'::regclass, 'audit.chain_head'::regclass);

SELECT seq = 0 OR seq = (SELECT max(seq) FROM audit.events) FROM audit.chain_head;

-- The SQL hash and sophia.db.audit.event_hash (Python) agree on the format.
SELECT audit.event_hash(repeat('0', 64), 1, '2026-01-01 00:00:00.123456+00', 'sophïa', 'deploy', 'mcp-research',
                        '{"b": [true, null], "a": 1}', 'success', NULL)
       = 'd7a02f896801df13f42ecbb11b8467231967d3d8ee0ece46eb0f961f493025f6';
SELECT audit.event_hash(repeat('f', 64), 2, '2026-01-01 00:00:00.123456+00', 'sophïa', 'deploy', 'mcp-research',
                        '{}', 'failure', 'req-1')
       = '0cda75f971748b4e2ae8a0a1eec8944a69541090424a8f34cbdf8b170d5ad228';

-- The analytics role reads and never writes; the writer appends and never rewrites.
SELECT has_table_privilege('sophia_analytics', 'audit.events', 'SELECT')
   AND NOT has_table_privilege('sophia_analytics', 'audit.events', 'INSERT, UPDATE, DELETE, TRUNCATE');
SELECT has_table_privilege('sophia_audit_writer', 'audit.events', 'INSERT')
   AND NOT has_table_privilege('sophia_audit_writer', 'audit.events', 'UPDATE, DELETE, TRUNCATE')
   AND NOT has_table_privilege('sophia_audit_writer', 'audit.chain_head', 'INSERT, UPDATE, DELETE, TRUNCATE');
