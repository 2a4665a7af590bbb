-- Run after 002_analytics_login is applied (inside its transaction, rolled back): each query must return true.
SELECT NOT (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)
  FROM pg_roles WHERE rolname = 'sophia_analytics_mcp';

SELECT pg_has_role('sophia_analytics_mcp', 'sophia_analytics', 'USAGE');

-- No predefined role that reaches past SQL: server files and programs, other sessions, every table.
SELECT bool_and(NOT pg_has_role('sophia_analytics_mcp', r.rolname, 'USAGE'))
  FROM pg_roles r
 WHERE r.rolname IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program',
                     'pg_signal_backend', 'pg_read_all_data', 'pg_write_all_data', 'pg_read_all_settings',
                     'pg_read_all_stats', 'pg_monitor', 'pg_database_owner');

SELECT has_table_privilege('sophia_analytics_mcp', 'audit.events', 'SELECT')
   AND NOT has_table_privilege('sophia_analytics_mcp', 'audit.events', 'INSERT, UPDATE, DELETE, TRUNCATE')
   AND NOT has_table_privilege('sophia_analytics_mcp', 'audit.chain_head', 'UPDATE');

SELECT NOT has_schema_privilege('sophia_analytics_mcp', 'sophia_meta', 'USAGE')
   AND NOT has_schema_privilege('sophia_analytics_mcp', 'public', 'CREATE');
