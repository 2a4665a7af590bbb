"""Which database connections must use TLS: every one that leaves this machine."""

import pytest

from sophia.db.tls import tls_problem


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("postgresql://u:pw@127.0.0.1:5432/db", False),
        ("postgresql://u:pw@localhost/db", False),
        ("postgresql://u:pw@[::1]:5432/db", False),
        ("host=/var/run/postgresql dbname=db", False),
        ("dbname=db", False),  # no host: the default Unix socket
        ("postgresql://u:pw@db.example.com/db?sslmode=require", False),
        ("postgresql://u:pw@db.example.com/db?sslmode=verify-full", False),
        ("postgresql://u:pw@db.example.com/db", True),
        ("postgresql://u:pw@db.example.com/db?sslmode=prefer", True),
        ("postgresql://u:pw@db.example.com/db?sslmode=disable", True),
        ("postgresql://u:pw@10.1.2.3/db?sslmode=allow", True),
        ("host=ep-x.us-east-1.aws.neon.tech hostaddr=127.0.0.1 dbname=db", False),  # dialled on loopback
        ("host=localhost,db.example.com dbname=db", True),  # one of the hosts is remote
    ],
)
def test_tls_is_required_off_this_machine(url: str, refused: bool) -> None:
    problem = tls_problem(url)
    assert (problem is not None) is refused
    if problem:
        assert "pw" not in problem
        assert "TLS" in problem


def test_a_string_that_is_not_a_connection_string_is_refused_without_echoing_it() -> None:
    problem = tls_problem("postgresql://u:s3cr3t@host:notaport/db x=")
    assert problem == "not a valid PostgreSQL connection string"
