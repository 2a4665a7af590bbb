import psycopg
import pytest

from sophia.platforms.local.postgres import EmbeddedPostgres


def test_fresh_database_is_a_real_server_with_password_auth(database_url: str, pg_server: EmbeddedPostgres) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
        assert conn.execute("SELECT sum(x) FROM t").fetchone() == (3,)
    wrong = database_url.replace(pg_server.password(), "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong).close()
