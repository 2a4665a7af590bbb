import pytest

from sophia.db.sqltext import controls_transaction, needs_no_transaction, split_statements

CASES = [
    ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
    ("SELECT 1", ["SELECT 1"]),
    ("-- only a comment\n", []),
    ("SELECT ';' AS a; SELECT 2", ["SELECT ';' AS a", "SELECT 2"]),
    ("SELECT 'it''s; fine'; SELECT 2", ["SELECT 'it''s; fine'", "SELECT 2"]),
    ("SELECT E'a\\'; b'; SELECT 2", ["SELECT E'a\\'; b'", "SELECT 2"]),
    ('SELECT 1 AS "a;b"; SELECT 2', ['SELECT 1 AS "a;b"', "SELECT 2"]),
    ("SELECT 1 -- c; still comment\n; SELECT 2", ["SELECT 1 -- c; still comment", "SELECT 2"]),
    ("SELECT /* a /* nested; */ b; */ 1; SELECT 2", ["SELECT /* a /* nested; */ b; */ 1", "SELECT 2"]),
    ("DO $$ BEGIN PERFORM 1; END $$; SELECT 2", ["DO $$ BEGIN PERFORM 1; END $$", "SELECT 2"]),
    (
        "CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql; SELECT 2",
        ["CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql", "SELECT 2"],
    ),
    ("SELECT $1::int; SELECT 2", ["SELECT $1::int", "SELECT 2"]),
    (
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END;"
        " SELECT 3",
        [
            "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END",
            "SELECT 3",
        ],
    ),
    (
        "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO v VALUES (2)); SELECT 2",
        ["CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO v VALUES (2))", "SELECT 2"],
    ),
]


@pytest.mark.parametrize(("sql", "expected"), CASES)
def test_split_statements(sql: str, expected: list[str]) -> None:
    assert [s.text for s in split_statements(sql)] == expected


def test_statements_know_their_line_and_leading_words() -> None:
    statements = split_statements("-- header\n\nCREATE TABLE t (x int);\n\n  create index concurrently i on t (x);\n")
    assert [s.line for s in statements] == [3, 5]
    assert statements[1].words[:3] == ("CREATE", "INDEX", "CONCURRENTLY")
    assert statements[1].concurrently


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("BEGIN", True),
        ("begin transaction", True),
        ("COMMIT", True),
        ("START TRANSACTION", True),
        ("ROLLBACK", True),
        ("ROLLBACK TO SAVEPOINT a", False),
        ("SELECT 1", False),
        ("END", True),
    ],
)
def test_transaction_control_is_recognised(sql: str, expected: bool) -> None:
    assert controls_transaction(split_statements(sql)[0]) is expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (x)", True),
        ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (x)", True),
        ("DROP INDEX CONCURRENTLY IF EXISTS i", True),
        ("REINDEX INDEX CONCURRENTLY i", True),
        ("ALTER TABLE p DETACH PARTITION c CONCURRENTLY", True),
        ("VACUUM t", True),
        ("CREATE DATABASE x", True),
        ("CREATE INDEX i ON t (x)", False),
        ("SELECT 'concurrently'", False),
    ],
)
def test_statements_that_need_no_transaction(sql: str, expected: bool) -> None:
    assert needs_no_transaction(split_statements(sql)[0]) is expected
