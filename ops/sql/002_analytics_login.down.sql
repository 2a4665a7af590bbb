-- Undo 002_analytics_login: the role keeps its login (the secret is not ours to revoke) but reads nothing.
REVOKE sophia_analytics FROM sophia_analytics_mcp;
ALTER ROLE sophia_analytics_mcp RESET ALL;
