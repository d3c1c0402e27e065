"""Checking twin values against DeviceModel properties: type, bounds, access mode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.devicemodel import (
    PropertySpec,
    check_desired,
    check_value,
    property_specs,
    same_value,
)

MODEL = {
    "kind": "DeviceModel",
    "spec": {
        "properties": [
            {
                "name": "t",
                "type": "FLOAT",
                "accessMode": "ReadOnly",
                "minimum": "-50",
                "maximum": "100",
            },
            {"name": "n", "type": "INT", "minimum": 0, "maximum": 10},
            {"name": "d", "type": "double"},
            {"name": "s"},
            {"name": "b", "type": "BOOLEAN", "accessMode": "ReadWrite", "minimum": ""},
            {"name": "weird", "type": "INT", "minimum": "low"},
            {"type": "INT"},
            "junk",
        ]
    },
}


def specs() -> dict[str, PropertySpec]:
    return property_specs(MODEL)


def test_model_properties_are_parsed() -> None:
    """Types upper-cased, bounds from strings or numbers, junk entries skipped."""
    s = specs()
    assert sorted(s) == ["b", "d", "n", "s", "t", "weird"]
    assert (s["t"].type, s["t"].read_only, s["t"].minimum, s["t"].maximum) == (
        "FLOAT",
        True,
        -50,
        100,
    )
    assert (s["n"].minimum, s["n"].maximum) == (0, 10)
    assert s["d"].type == "DOUBLE" and s["d"].twin_type == "double"
    assert s["s"].type == "STRING" and not s["s"].read_only
    assert s["b"].minimum is None
    assert s["weird"].minimum is None


def test_model_without_properties() -> None:
    """A model with no usable properties yields none."""
    assert property_specs({}) == {}
    assert property_specs({"spec": {"properties": "x"}}) == {}


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("t", "21.5"),
        ("t", "-50"),
        ("t", "1e2"),
        ("t", ".5"),
        ("n", "10"),
        ("n", "+3"),
        ("d", "1e300"),
        ("s", "anything at all"),
        ("b", "true"),
        ("b", "0"),
        ("b", "False"),
    ],
)
def test_good_values_pass(prop: str, value: str) -> None:
    """Values that parse as the type and lie within the bounds are accepted."""
    assert check_value(specs()[prop], value) is None


@pytest.mark.parametrize(
    ("prop", "value", "needle"),
    [
        ("t", "warm", "not a valid FLOAT"),
        ("t", "nan", "not a valid FLOAT"),
        ("t", "inf", "not a valid FLOAT"),
        ("t", " 1", "not a valid FLOAT"),
        ("t", "100.5", "above the maximum 100"),
        ("t", "-50.01", "below the minimum -50"),
        ("n", "1.0", "not a valid INT"),
        ("n", "11", "above the maximum 10"),
        ("n", "-1", "below the minimum 0"),
        ("n", "99999999999999999999", "not a valid INT"),
        ("d", "1e400", "not a valid DOUBLE"),
        ("b", "yes", "not a valid BOOLEAN"),
    ],
)
def test_bad_values_name_property_and_problem(prop: str, value: str, needle: str) -> None:
    """A refused value's reason names the property and the type or bound it broke."""
    reason = check_value(specs()[prop], value)
    assert reason is not None and f"property {prop}" in reason and needle in reason


def test_float_beyond_32_bits_is_refused() -> None:
    """A FLOAT must fit 32 bits; a DOUBLE may be larger."""
    assert check_value(PropertySpec("f", "FLOAT"), "1e39") is not None
    assert check_value(PropertySpec("f", "DOUBLE"), "1e39") is None


def test_read_only_takes_no_desired() -> None:
    """A ReadOnly property refuses any desired value; a ReadWrite one checks it as a value."""
    assert "ReadOnly" in (check_desired(specs()["t"], "20") or "")
    assert check_desired(specs()["n"], "5") is None
    assert "maximum" in (check_desired(specs()["n"], "50") or "")


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_int64_is_an_int(n: int) -> None:
    """Every 64-bit integer's text is a valid INT with no bounds."""
    assert check_value(PropertySpec("i", "INT"), str(n)) is None


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_finite_float_text_is_a_double(x: float) -> None:
    """Python's text for any finite float is a valid DOUBLE."""
    assert check_value(PropertySpec("x", "DOUBLE"), repr(x)) is None


@given(st.integers(min_value=-100, max_value=100))
def test_bounds_are_inclusive(n: int) -> None:
    """Values at or between the bounds pass; outside they fail."""
    spec = property_specs(
        {"spec": {"properties": [{"name": "v", "type": "INT", "minimum": "-10", "maximum": "10"}]}}
    )["v"]
    assert (check_value(spec, str(n)) is None) == (-10 <= n <= 10)


@pytest.mark.parametrize(
    ("type_", "a", "b", "same"),
    [
        ("float", "21.5", "21.50", True),
        ("FLOAT", "21.5", "21.6", False),
        ("int", "01", "1", True),
        ("boolean", "true", "1", True),
        ("boolean", "true", "false", False),
        ("string", "a", "a ", False),
        ("float", "x", "x", True),
        ("float", "x", "y", False),
        ("string", None, None, True),
        ("string", "a", None, False),
    ],
)
def test_same_value_compares_as_the_type(
    type_: str, a: str | None, b: str | None, same: bool
) -> None:
    """Numbers and booleans compare by meaning, strings by text."""
    assert same_value(type_, a, b) is same
