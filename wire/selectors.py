"""Kubernetes label selectors (``-l`` / ``?labelSelector=``): parse once, match anywhere.

The grammar is Kubernetes' set-based one: requirements separated by commas, each one of
``key``, ``!key``, ``key=value`` (or ``==``), ``key!=value``, ``key in (v1,v2)``,
``key notin (v1,v2)``. As in Kubernetes, ``!=`` and ``notin`` match objects without the key,
and an empty selector matches everything. Keys are ``[prefix/]name`` and values are label
values (at most 63 characters of ``[A-Za-z0-9._-]``, starting and ending alphanumeric; values
may be empty). edgectl checks a selector with this module before sending it, and the admin
API filters with it, so both refuse the same text with the same line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from wire.errors import InvalidSelector

Operator = Literal["=", "!=", "in", "notin", "exists", "!"]

_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_KEY = rf"(?:{_PREFIX}/)?{_NAME}"
_VALUE = rf"(?:{_NAME})?"
_EXISTS = re.compile(rf"\s*(!?)\s*({_KEY})\s*")
_EQUALS = re.compile(rf"\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*")
_SET = re.compile(rf"\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*")
_VALUE_ONLY = re.compile(_VALUE)
_MAX_PREFIX = 253


class Requirement(NamedTuple):
    """One condition on one label."""

    key: str
    op: Operator
    #: the values compared with (one for = and !=, none for exists and !)
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set meets this condition."""
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


class Selector(NamedTuple):
    """All of its requirements must hold (an empty one matches everything)."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether a label set meets every requirement."""
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    def matches_object(self, obj: Mapping[str, Any]) -> bool:
        """Whether an object's ``metadata.labels`` meet every requirement."""
        meta = obj.get("metadata")
        labels = meta.get("labels") if isinstance(meta, Mapping) else None
        return self.matches(labels if isinstance(labels, Mapping) else None)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def parse_selector(text: str) -> Selector:
    """``app=web,tier in (a,b),!legacy`` -> a :class:`Selector`.

    Raises:
        InvalidSelector: the text does not parse; the message quotes the requirement.
    """
    return Selector(tuple(_requirement(part, text) for part in _split(text)))


def _split(text: str) -> list[str]:
    """Requirements separated by the commas that are not inside parentheses."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    last = text[start:]
    if parts or last.strip():
        parts.append(last)
    return parts


def _requirement(part: str, whole: str) -> Requirement:
    if m := _EXISTS.fullmatch(part):
        _check_key(m.group(2), whole)
        return Requirement(m.group(2), "!" if m.group(1) else "exists")
    if m := _EQUALS.fullmatch(part):
        _check_key(m.group(1), whole)
        op: Operator = "!=" if m.group(2) == "!=" else "="
        return Requirement(m.group(1), op, (m.group(3),))
    if m := _SET.fullmatch(part):
        _check_key(m.group(1), whole)
        values = tuple(v.strip() for v in m.group(3).split(","))
        if not all(_VALUE_ONLY.fullmatch(v) for v in values):
            raise InvalidSelector(
                f"invalid label selector {whole!r}: bad value in {part.strip()!r}"
            )
        set_op: Operator = "in" if m.group(2) == "in" else "notin"
        return Requirement(m.group(1), set_op, tuple(dict.fromkeys(values)))
    raise InvalidSelector(
        f"invalid label selector {whole!r}: cannot parse {part.strip()!r} "
        "(use key=value, key!=value, key in (a,b), key notin (a,b), key, !key)"
    )


def _check_key(key: str, whole: str) -> None:
    prefix, sep, _ = key.rpartition("/")
    if sep and len(prefix) > _MAX_PREFIX:
        raise InvalidSelector(f"invalid label selector {whole!r}: key prefix too long")
