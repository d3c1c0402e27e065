"""kubectl's JSONPath templates for ``-o jsonpath=…`` (pure).

Supported, as kubectl has them: literal text around ``{…}`` expressions; ``$``/``@`` roots;
``.field``, ``['field']``, ``..field`` (recursive), ``*`` and ``[*]``, ``[n]``, ``[-1]``,
``[a:b]``; filters ``[?(@.path == "x")]`` (``==``, ``!=``, ``<``, ``>``, ``<=``, ``>=``, or a
bare ``@.path`` for presence); ``{range …}…{end}``; string literals such as ``{"\\n"}``.
Several results print separated by spaces; maps and lists print as JSON; missing fields print
nothing (kubectl's ``get`` allows missing keys).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NamedTuple


class JsonPathError(ValueError):
    """A template that does not parse."""


class _Text(NamedTuple):
    text: str


class _Expr(NamedTuple):
    steps: tuple[Callable[[Any], list[Any]], ...]


class _Range(NamedTuple):
    steps: tuple[Callable[[Any], list[Any]], ...]
    body: tuple[Any, ...]


_STRING = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*""")
_FIELD = re.compile(r"[A-Za-z0-9_\-/]+")
_FILTER = re.compile(
    r"""\?\(\s*@((?:\.[A-Za-z0-9_\-/]+|\[['"][^'"]*['"]\])*)\s*"""
    r"""(?:(==|!=|<=|>=|<|>)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|-?\d+(?:\.\d+)?|true|false))?\s*\)"""
)


def render(template: str, data: Any) -> str:
    """Fill ``template`` from ``data``.

    Raises:
        JsonPathError: the template does not parse.
    """
    nodes, rest = _parse_nodes(template, 0, top=True)
    if rest != len(template):  # pragma: no cover - _parse_nodes consumes all at top level
        raise JsonPathError(f"unexpected {{end}} in {template!r}")
    out: list[str] = []
    _run(nodes, data, out)
    return "".join(out)


def _run(nodes: tuple[Any, ...], current: Any, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Expr):
            out.append(" ".join(_show(v) for v in _walk(node.steps, current)))
        else:
            for value in _walk(node.steps, current):
                _run(node.body, value, out)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _walk(steps: tuple[Callable[[Any], list[Any]], ...], current: Any) -> list[Any]:
    values = [current]
    for step in steps:
        values = [out for v in values for out in step(v)]
    return values


def _parse_nodes(text: str, pos: int, *, top: bool) -> tuple[tuple[Any, ...], int]:
    nodes: list[Any] = []
    while pos < len(text):
        start = text.find("{", pos)
        if start < 0:
            nodes.append(_Text(text[pos:]))
            return tuple(nodes), len(text)
        if start > pos:
            nodes.append(_Text(text[pos:start]))
        end = _closing(text, start)
        inner = text[start + 1 : end].strip()
        pos = end + 1
        if inner == "end":
            if top:
                raise JsonPathError(f"{{end}} without {{range}} in {text!r}")
            return tuple(nodes), pos
        if inner.startswith("range ") or inner == "range":
            body, pos = _parse_nodes(text, pos, top=False)
            nodes.append(_Range(_parse_path(inner[5:].strip(), text), body))
        elif _STRING.fullmatch(inner):
            nodes.append(_Text(_unquote(inner.strip())))
        else:
            nodes.append(_Expr(_parse_path(inner, text)))
    if not top:
        raise JsonPathError(f"{{range}} without {{end}} in {text!r}")
    return tuple(nodes), pos


def _closing(text: str, start: int) -> int:
    quote = ""
    for i in range(start + 1, len(text)):
        ch = text[i]
        if quote:
            if ch == "\\":
                continue
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "}":
            return i
    raise JsonPathError(f"unclosed {{ in {text!r}")


def _unquote(literal: str) -> str:
    """A quoted literal (``"a\\n"`` or ``'a'``) -> its text, with JSON's escapes."""
    inner = literal[1:-1]
    if literal[0] == "'":  # as JSON text: \' means ', and a bare " must be escaped
        inner = inner.replace("\\'", "'").replace('"', '\\"')
    try:
        value = json.loads(f'"{inner}"')
    except ValueError as exc:
        raise JsonPathError(f"bad string literal {literal}") from exc
    return str(value)


def _parse_path(path: str, template: str) -> tuple[Callable[[Any], list[Any]], ...]:
    steps: list[Callable[[Any], list[Any]]] = []
    pos = 0
    if path[:1] in ("$", "@"):
        pos = 1
    while pos < len(path):
        if path.startswith("..", pos):
            m = _FIELD.match(path, pos + 2)
            if not m:
                raise JsonPathError(f"expected a field after '..' in {template!r}")
            steps.append(_recursive(m.group()))
            pos = m.end()
        elif path[pos] == ".":
            if path.startswith(".*", pos):
                steps.append(_all)
                pos += 2
                continue
            m = _FIELD.match(path, pos + 1)
            if not m:
                if pos + 1 == len(path):  # "{.}": the current object
                    break
                raise JsonPathError(f"bad field at {path[pos:]!r} in {template!r}")
            steps.append(_field(m.group()))
            pos = m.end()
        elif path[pos] == "[":
            end = path.find("]", pos)
            if path.startswith("[?(", pos):
                end = path.find(")]", pos) + 1
            if end <= 0:
                raise JsonPathError(f"unclosed [ in {template!r}")
            steps.append(_bracket(path[pos + 1 : end].strip(), template))
            pos = end + 1
        else:
            raise JsonPathError(f"unexpected {path[pos:]!r} in {template!r}")
    return tuple(steps)


def _field(name: str) -> Callable[[Any], list[Any]]:
    def step(value: Any) -> list[Any]:
        return [value[name]] if isinstance(value, dict) and name in value else []

    return step


def _all(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, list) else []


def _recursive(name: str) -> Callable[[Any], list[Any]]:
    def step(value: Any) -> list[Any]:
        found: list[Any] = []
        stack = [value]
        while stack:
            v = stack.pop(0)
            if isinstance(v, dict):
                if name in v:
                    found.append(v[name])
                stack.extend(v.values())
            elif isinstance(v, list):
                stack.extend(v)
        return found

    return step


def _bracket(inner: str, template: str) -> Callable[[Any], list[Any]]:
    if inner == "*":
        return _all
    if inner[:1] in ("'", '"'):
        return _field(_unquote(inner))
    if inner.startswith("?"):
        return _filter(inner, template)
    try:
        if ":" in inner:
            lo, _, hi = inner.partition(":")
            sl = slice(int(lo) if lo.strip() else None, int(hi) if hi.strip() else None)
            return lambda v: v[sl] if isinstance(v, list) else []
        index = int(inner)
    except ValueError:
        raise JsonPathError(f"bad index [{inner}] in {template!r}") from None

    def at(value: Any) -> list[Any]:
        if isinstance(value, list) and -len(value) <= index < len(value):
            return [value[index]]
        return []

    return at


def _filter(inner: str, template: str) -> Callable[[Any], list[Any]]:
    m = _FILTER.fullmatch(inner)
    if m is None:
        raise JsonPathError(f"bad filter [{inner}] in {template!r}")
    steps = _parse_path("@" + m.group(1), template)
    op, raw = m.group(2), m.group(3)
    want: Any = None
    if raw is not None:
        want = _unquote(raw) if raw[:1] in "\"'" else json.loads(raw)

    def keep(item: Any) -> bool:
        found = _walk(steps, item)
        if op is None:
            return bool(found)
        if not found:
            return False
        got = found[0]
        try:
            if op == "==":
                return bool(got == want)
            if op == "!=":
                return bool(got != want)
            if op == "<":
                return bool(got < want)
            if op == ">":
                return bool(got > want)
            if op == "<=":
                return bool(got <= want)
            return bool(got >= want)
        except TypeError:
            return False

    def step(value: Any) -> list[Any]:
        items = (
            value
            if isinstance(value, list)
            else list(value.values())
            if isinstance(value, dict)
            else []
        )
        return [item for item in items if keep(item)]

    return step
