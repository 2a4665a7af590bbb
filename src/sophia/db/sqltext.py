"""Split a SQL script into statements the way psql does, without a SQL parser.

The lexer knows what hides a semicolon: single-quoted strings (with ``E''`` backslash escapes), quoted identifiers,
dollar-quoted bodies, line and nested block comments, parentheses, and the ``BEGIN ATOMIC … END`` bodies of
SQL-standard functions (tracked with psql's own heuristic). Each statement keeps the line it starts on so errors can
point at it, and its leading words so callers can classify it (transaction control, CONCURRENTLY, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")
_LEADING_WORDS = 16


@dataclass(frozen=True)
class Statement:
    text: str  # from the first token to the end, without the semicolon
    line: int  # 1-based line of the first token
    words: tuple[str, ...]  # the first top-level words, upper-cased
    concurrently: bool  # the word CONCURRENTLY appears at top level

    @property
    def head(self) -> str:
        """The statement's first line, shortened, for messages."""
        first = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return first if len(first) <= 80 else first[:77] + "..."


class _Scanner:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.statements: list[Statement] = []
        self._reset(0)

    def _reset(self, start: int) -> None:
        self.start = start
        self.first_token: int | None = None
        self.words: list[str] = []
        self.concurrently = False
        self.word_count = 0
        self.create_routine = [False, False]  # CREATE seen first; FUNCTION/PROCEDURE seen in the right place
        self.paren_depth = 0
        self.begin_depth = 0

    def _token(self, pos: int) -> None:
        if self.first_token is None:
            self.first_token = pos

    def _word(self, word: str, pos: int) -> None:
        self._token(pos)
        upper = word.upper()
        if len(self.words) < _LEADING_WORDS:
            self.words.append(upper)
        if upper == "CONCURRENTLY":
            self.concurrently = True
        # psql's heuristic: inside CREATE [OR REPLACE] FUNCTION|PROCEDURE, BEGIN/CASE open and END closes a block.
        lead = self.words[:4]
        routine = (
            bool(lead)
            and lead[0] == "CREATE"
            and (
                (len(lead) > 1 and lead[1] in {"FUNCTION", "PROCEDURE"})
                or (len(lead) > 3 and lead[1:3] == ["OR", "REPLACE"] and lead[3] in {"FUNCTION", "PROCEDURE"})
            )
        )
        if routine and self.paren_depth == 0:
            if upper == "BEGIN" or (upper == "CASE" and self.begin_depth > 0):
                self.begin_depth += 1
            elif upper == "END" and self.begin_depth > 0:
                self.begin_depth -= 1
        self.word_count += 1

    def _emit(self, end: int) -> None:
        if self.first_token is not None:
            text = self.sql[self.first_token : end].strip()
            line = self.sql.count("\n", 0, self.first_token) + 1
            self.statements.append(Statement(text, line, tuple(self.words), self.concurrently))

    def run(self) -> list[Statement]:
        sql, i, n = self.sql, 0, len(self.sql)
        while i < n:
            ch = sql[i]
            if ch == "-" and sql.startswith("--", i):
                nl = sql.find("\n", i)
                i = n if nl < 0 else nl + 1
            elif ch == "/" and sql.startswith("/*", i):
                i = _skip_block_comment(sql, i)
            elif ch == "'":
                self._token(i)
                escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not _is_word_char(sql[i - 2]))
                i = _skip_quoted(sql, i, "'", backslash=escapes)
            elif ch == '"':
                self._token(i)
                i = _skip_quoted(sql, i, '"', backslash=False)
            elif ch == "$" and (i == 0 or not _is_word_char(sql[i - 1])) and (m := _DOLLAR_TAG.match(sql, i)):
                self._token(i)
                close = sql.find(m.group(0), m.end())
                i = n if close < 0 else close + len(m.group(0))
            elif ch == ";" and self.paren_depth == 0 and self.begin_depth == 0:
                self._emit(i)
                i += 1
                self._reset(i)
            elif _is_word_start(ch) and (m := _WORD.match(sql, i)):
                # An E'..' string starts with a one-letter word; the quote branch sees it next.
                self._word(m.group(0), i)
                i = m.end()
            else:
                if not ch.isspace():
                    self._token(i)
                if ch == "(":
                    self.paren_depth += 1
                elif ch == ")" and self.paren_depth > 0:
                    self.paren_depth -= 1
                i += 1
        self._emit(n)
        return self.statements


def _is_word_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_"


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _skip_quoted(sql: str, i: int, quote: str, *, backslash: bool) -> int:
    j, n = i + 1, len(sql)
    while j < n:
        ch = sql[j]
        if backslash and ch == "\\":
            j += 2
            continue
        if ch == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _skip_block_comment(sql: str, i: int) -> int:
    depth, j, n = 0, i, len(sql)
    while j < n:
        if sql.startswith("/*", j):
            depth += 1
            j += 2
        elif sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return n


def split_statements(sql: str) -> list[Statement]:
    """The statements of ``sql`` in order; comment-only stretches are dropped."""
    return _Scanner(sql).run()


_TX_CONTROL = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"}


def controls_transaction(statement: Statement) -> bool:
    """BEGIN/COMMIT/ROLLBACK and friends: the runner owns transactions, files must not."""
    words = statement.words
    if not words or words[0] not in _TX_CONTROL:
        return False
    # ROLLBACK TO SAVEPOINT stays inside the transaction and is harmless.
    return not (words[0] == "ROLLBACK" and len(words) > 1 and words[1] == "TO")


def needs_no_transaction(statement: Statement) -> bool:
    """Statements Postgres refuses inside a transaction block."""
    words = statement.words
    if not words:
        return False
    first_two = tuple(words[:2])
    if first_two in {
        ("CREATE", "DATABASE"),
        ("DROP", "DATABASE"),
        ("ALTER", "SYSTEM"),
        ("CREATE", "TABLESPACE"),
        ("DROP", "TABLESPACE"),
    }:
        return True
    if words[0] == "VACUUM":
        return True
    if statement.concurrently and words[0] in {"CREATE", "DROP", "REINDEX"}:
        return True
    return statement.concurrently and words[0] == "ALTER" and "DETACH" in words
