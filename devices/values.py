"""Typed property values and their twin strings, pure.

KubeEdge carries every value as a string and names its type in the DeviceModel (INT, FLOAT,
DOUBLE, BOOLEAN, STRING). Drivers work with typed Python values; this module is the one place
that turns a twin string into a typed value (for a write) and a typed value into a twin string
(for a report), using the same parsing rules the edge checks values with
(:mod:`wire.devicemodel`), so a value the mapper reports is never refused by its own edge.

Floats are printed in their shortest form at the precision the type holds: a FLOAT is a 32-bit
float on the device, so ``0.1`` read back from two registers prints as ``0.1``, not
``0.10000000149011612`` (the shortest decimal that is the same float32); a DOUBLE keeps 15
significant digits, so a scale of ``0.1`` on ``217`` prints ``21.7``, not
``21.700000000000003``.
"""

from __future__ import annotations

import math
import struct
from typing import Final

from wire.devicemodel import BOOLEAN, DOUBLE, FLOAT, INT, STRING, parse_bool, parse_number
from wire.errors import PropertyError

Value = int | float | bool | str

#: the types a mapper reads and writes (KubeEdge's BYTES and STREAM have no driver here)
TYPES: Final = frozenset({INT, FLOAT, DOUBLE, BOOLEAN, STRING})
_FLOAT32_MAX: Final = 3.4028234663852886e38


def parse(type_: str, text: str) -> Value:
    """``text`` (a twin value) as a typed value of ``type_``.

    Raises:
        PropertyError: ``text`` is not a valid ``type_``.
    """
    if type_ in (INT, FLOAT, DOUBLE):
        number = parse_number(type_, text.strip())
        if number is None:
            raise PropertyError(f"{text!r} is not a valid {type_}")
        return number
    if type_ == BOOLEAN:
        flag = parse_bool(text.strip())
        if flag is None:
            raise PropertyError(f"{text!r} is not a valid BOOLEAN (use true or false)")
        return flag
    return text


def coerce(type_: str, value: Value) -> Value:
    """A driver's raw value as the model's type (a register's int as FLOAT, a float as INT).

    Raises:
        PropertyError: the value cannot be that type (a string for a number, NaN for an INT).
    """
    if type_ == STRING:
        return value if isinstance(value, str) else format_value(_guess(value), value)
    if type_ == BOOLEAN:
        if isinstance(value, str):
            return parse(BOOLEAN, value)
        return bool(value)
    if isinstance(value, str):
        return parse(type_, value)
    if type_ == INT:
        if isinstance(value, float) and not math.isfinite(value):
            raise PropertyError(f"{value} is not a valid INT")
        return round(value)
    return float(value)


def _guess(value: Value) -> str:
    if isinstance(value, bool):
        return BOOLEAN
    return INT if isinstance(value, int) else DOUBLE


def format_value(type_: str, value: Value) -> str:
    """The twin string of ``value`` for ``type_``: ``"21.5"``, ``"20"``, ``"true"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if type_ == INT or isinstance(value, int):
        return str(round(value))
    short = _shortest_float32(value) if type_ == FLOAT else None
    if short is None:
        short = float(f"{value:.15g}")
    if short.is_integer() and abs(short) < 1e15:
        return str(int(short))
    return repr(short)


def _shortest_float32(value: float) -> float | None:
    """The shortest decimal that is the same 32-bit float as ``value`` (``None``: no float32)."""
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        return None
    want = struct.pack(">f", value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if abs(candidate) <= _FLOAT32_MAX and struct.pack(">f", candidate) == want:
            return candidate
    return None


def same(type_: str, a: Value, b: Value) -> bool:
    """Whether two values are equal as ``type_`` would print them (``21.5`` and ``21.50``)."""
    return format_value(type_, a) == format_value(type_, b)
