"""Checking a twin value against its DeviceModel property, pure.

Why on the edge: a mapper's report is answered on the edge (``.../update/result``) and, once
accepted, is durable and travels to the cloud; a value the model forbids must be refused there
and then, with a reason the mapper's author can act on, rather than stored and rejected later by
someone who cannot answer the mapper.

KubeEdge carries every value as a string and names its type in the DeviceModel
(``spec.properties[].type``: INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, STREAM). A value must
parse as that type (integers as base-10 digits, floats in decimal or exponent notation and
finite, booleans as Go's ``strconv.ParseBool`` accepts them, as KubeEdge's mappers produce them)
and, for numbers, lie within the model's ``minimum``/``maximum`` when those are set. A
``ReadOnly`` property takes no desired value: nobody can make the device adopt one.

Functions return a reason string (or ``None`` when the value is fine) instead of raising: the
caller turns reasons into ``400`` results and keeps going with the next message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

INT = "INT"
FLOAT = "FLOAT"
DOUBLE = "DOUBLE"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
BYTES = "BYTES"
STREAM = "STREAM"
NUMERIC = frozenset({INT, FLOAT, DOUBLE})
READ_ONLY = "ReadOnly"
READ_WRITE = "ReadWrite"

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
#: what Go's strconv.ParseBool accepts, which is what Go mappers print
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT64 = (-(2**63), 2**63 - 1)
#: the largest finite 32-bit float: a FLOAT beyond it cannot be represented by the device
_FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """What the DeviceModel says about one property."""

    name: str
    #: upper-case type name; unknown types are checked like STRING
    type: str = STRING
    access_mode: str = READ_WRITE
    minimum: float | None = None
    maximum: float | None = None
    #: the bounds as written in the model, for reasons
    minimum_text: str = ""
    maximum_text: str = ""

    @property
    def twin_type(self) -> str:
        """The type as KubeEdge writes it in twin ``metadata.type`` (lower case)."""
        return self.type.lower()

    @property
    def read_only(self) -> bool:
        return self.access_mode == READ_ONLY


def _bound(raw: Any) -> tuple[float | None, str]:
    """A model bound as a number and its text; absent, empty or unparsable means no bound."""
    if raw is None or isinstance(raw, bool):
        return None, ""
    if isinstance(raw, int | float):
        return (float(raw), str(raw)) if math.isfinite(raw) else (None, "")
    if isinstance(raw, str):
        text = raw.strip()
        if _FLOAT_RE.fullmatch(text):
            number = float(text)
            if math.isfinite(number):
                return number, text
    return None, ""


def property_specs(model: dict[str, Any]) -> dict[str, PropertySpec]:
    """The properties of a DeviceModel object, by name. Malformed entries are skipped."""
    spec = model.get("spec")
    props = spec.get("properties") if isinstance(spec, dict) else None
    out: dict[str, PropertySpec] = {}
    if not isinstance(props, list):
        return out
    for p in props:
        if not isinstance(p, dict):
            continue
        name = p.get("name")
        if not isinstance(name, str) or not name:
            continue
        typ = p.get("type")
        mode = p.get("accessMode")
        minimum, minimum_text = _bound(p.get("minimum"))
        maximum, maximum_text = _bound(p.get("maximum"))
        out[name] = PropertySpec(
            name=name,
            type=typ.upper() if isinstance(typ, str) and typ else STRING,
            access_mode=mode if mode == READ_ONLY else READ_WRITE,
            minimum=minimum,
            maximum=maximum,
            minimum_text=minimum_text,
            maximum_text=maximum_text,
        )
    return out


def parse_number(type_: str, value: str) -> int | float | None:
    """``value`` as a number of ``type_`` (INT, FLOAT, DOUBLE), or ``None`` if it is not one."""
    if type_ == INT:
        if not _INT_RE.fullmatch(value):
            return None
        number = int(value)
        return number if _INT64[0] <= number <= _INT64[1] else None
    if not _FLOAT_RE.fullmatch(value):
        return None
    f = float(value)
    if not math.isfinite(f) or (type_ == FLOAT and abs(f) > _FLOAT32_MAX):
        return None
    return f


def parse_bool(value: str) -> bool | None:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def check_value(spec: PropertySpec, value: str) -> str | None:
    """Why ``value`` is not acceptable for ``spec``, or ``None`` if it is."""
    if spec.type in NUMERIC:
        number = parse_number(spec.type, value)
        if number is None:
            return f"property {spec.name}: {value!r} is not a valid {spec.type}"
        if spec.minimum is not None and number < spec.minimum:
            return (
                f"property {spec.name}: {value} is below the minimum {spec.minimum_text}"
                f" of the device model"
            )
        if spec.maximum is not None and number > spec.maximum:
            return (
                f"property {spec.name}: {value} is above the maximum {spec.maximum_text}"
                f" of the device model"
            )
        return None
    if spec.type == BOOLEAN and parse_bool(value) is None:
        return f"property {spec.name}: {value!r} is not a valid BOOLEAN (use true or false)"
    return None


def check_desired(spec: PropertySpec, value: str) -> str | None:
    """Like :func:`check_value`, and a ``ReadOnly`` property refuses any desired value."""
    if spec.read_only:
        return f"property {spec.name} is ReadOnly and takes no desired (expected) value"
    return check_value(spec, value)


def same_value(type_: str, a: str | None, b: str | None) -> bool:
    """Whether two values mean the same for ``type_``: ``"21.5"`` equals ``"21.50"`` as FLOAT.

    Used for deltas: a mapper that reports the desired value in its own spelling is in sync.
    """
    if a is None or b is None:
        return a is b
    if a == b:
        return True
    t = type_.upper()
    if t in NUMERIC:
        x, y = parse_number(t, a), parse_number(t, b)
        return x is not None and x == y
    if t == BOOLEAN:
        p, q = parse_bool(a), parse_bool(b)
        return p is not None and p == q
    return False


def desired_problems(device: dict[str, Any], model: dict[str, Any]) -> list[str]:
    """Every desired value of ``device`` that its ``model`` forbids, as reasons.

    Used by the cloud before it stores a Device, so a bad ``edgectl twin set`` is refused at
    once instead of being stored and then refused by the edge.
    """
    specs = property_specs(model)
    problems: list[str] = []
    spec = device.get("spec")
    props = spec.get("properties") if isinstance(spec, dict) else None
    if not isinstance(props, list):
        return problems  # a malformed spec is the manifest validation's to report
    for prop in props:
        if not isinstance(prop, dict):
            continue
        value = (prop.get("desired") or {}).get("value")
        spec = specs.get(str(prop.get("name")))
        if value is None or spec is None:
            continue
        reason = check_desired(spec, str(value))
        if reason:
            problems.append(reason)
    return problems
