"""Kubernetes label selectors (the ``labelSelector`` query parameter), parsed and matched as the apiserver does.

The grammar and the matching follow ``k8s.io/apimachinery/pkg/labels/selector.go``: requirements separated by
commas, each ``key`` (exists), ``!key`` (does not exist), ``key=value`` / ``key==value`` / ``key!=value``,
``key in (a,b)`` / ``key notin (a,b)``, or ``key>n`` / ``key<n`` (integers). ``!=`` and ``notin`` match an object
without the label; an empty selector matches everything. A value may be empty (``key=``, ``key in (a,)``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_SYMBOLS = frozenset({"==", "!=", "=", "!", "(", ")", ",", "<", ">"})
_TOKEN = re.compile(r"\s*(==|!=|[=!(),<>]|[^\s=!(),<>]+)")
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_OPERATORS = {"=": "in", "==": "in", "in": "in", "!=": "notin", "notin": "notin", ">": "gt", "<": "lt"}


class SelectorError(ValueError):
    """The selector does not parse; the message says where, as the apiserver's does."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # exists, !exists, in, notin, gt, lt
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator == "exists":
            return value is not None
        if self.operator == "!exists":
            return value is None
        if self.operator == "in":
            return value is not None and value in self.values
        if self.operator == "notin":
            return value is None or value not in self.values
        try:
            have, bound = int(value or ""), int(next(iter(self.values)))
        except ValueError:
            return False
        return have > bound if self.operator == "gt" else have < bound


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def parse(text: str) -> Selector:
    """The selector ``text`` means; ``SelectorError`` when it does not parse."""
    return Selector(tuple(_Parser(_tokens(text)).requirements()))


def _tokens(text: str) -> list[str]:
    tokens, at = [], 0
    while at < len(text):
        found = _TOKEN.match(text, at)
        if found is None:  # only trailing whitespace is left
            break
        tokens.append(found.group(1))
        at = found.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self._tokens = tokens
        self._at = 0

    def _peek(self) -> str | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _take(self) -> str | None:
        token = self._peek()
        self._at += 1
        return token

    def requirements(self) -> list[Requirement]:
        found: list[Requirement] = []
        while self._peek() is not None:
            found.append(self._requirement())
            after = self._take()
            if after is None:
                break
            following = self._peek()
            if after != "," or following is None or (following != "!" and following in _SYMBOLS):
                raise SelectorError(f"unable to parse requirement: found {after!r}, expected: ',' or end of string")
        return found

    def _requirement(self) -> Requirement:
        negated = self._peek() == "!"
        if negated:
            self._take()
        key = self._identifier("identifier")
        if not _KEY.match(key):
            raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
        if self._peek() in {None, ","}:
            return Requirement(key, "!exists" if negated else "exists")
        if negated:
            raise SelectorError(f"unable to parse requirement: found {self._peek()!r}, expected: ',' or end of string")
        written = self._take() or ""
        operator = _OPERATORS.get(written)
        if operator is None:
            raise SelectorError(f"unable to parse requirement: found {written!r}, expected: =, ==, !=, in, notin, >, <")
        values = self._set() if written in {"in", "notin"} else self._exact()
        for value in values:
            if not _VALUE.match(value):
                raise SelectorError(f"unable to parse requirement: invalid label value {value!r}")
        if operator in {"gt", "lt"} and not re.fullmatch(r"[+-]?[0-9]+", next(iter(values))):
            raise SelectorError(f"unable to parse requirement: {key}: the value of > and < must be an integer")
        return Requirement(key, operator, values)

    def _identifier(self, what: str) -> str:
        token = self._take()
        if token is None or token in _SYMBOLS:
            raise SelectorError(f"unable to parse requirement: found {token or 'end of string'!r}, expected: {what}")
        return token

    def _exact(self) -> frozenset[str]:
        if self._peek() in {None, ","}:
            return frozenset({""})
        return frozenset({self._identifier("identifier")})

    def _set(self) -> frozenset[str]:
        if self._take() != "(":
            raise SelectorError("unable to parse requirement: expected '(' after in / notin")
        values: set[str] = set()
        expect_value = True
        while True:
            item = self._take()
            if item == ")":
                if expect_value:
                    values.add("")  # "()" or "a,)": an empty value, as the apiserver reads it
                return frozenset(values)
            if item == ",":
                if expect_value:
                    values.add("")
                expect_value = True
            elif item is not None and item not in _SYMBOLS and expect_value:
                values.add(item)
                expect_value = False
            else:
                raise SelectorError(f"unable to parse requirement: found {item or 'end of string'!r} in a value set")
