"""The faster JSON paths agree with the standard library they stand in for.

``parse_json`` must accept and refuse exactly the texts ``json.loads`` accepts and refuses and
give equal values; ``dump_plain_json`` must accept and refuse exactly the plain values the
store's standard-library encoder does, and write text that parses to an equal value. "Equal"
is strict here: same types (``1`` is not ``1.0``, ``True`` is not ``1``), same key order, the
sign of ``-0.0``, NaN equal to NaN.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.codec import STDLIB_ENCODER, dump_plain_json, parse_json


def same(a: Any, b: Any) -> bool:
    """Strict equality of parsed JSON (see the module notes); iterative, for deep nesting."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, dict):
            if list(x) != list(y):
                return False
            pending.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif isinstance(x, float):
            if not (math.isnan(x) and math.isnan(y)) and (
                x != y or math.copysign(1, x) != math.copysign(1, y)
            ):
                return False
        elif x != y:
            return False
    return True


def outcome(fn: Any, arg: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn(arg))
    except (ValueError, TypeError, RecursionError):
        return ("refused", None)


def assert_parsers_agree(text: str | bytes) -> None:
    old, new = outcome(json.loads, text), outcome(parse_json, text)
    assert old[0] == new[0], (text, old, new)
    if old[0] == "ok":
        assert same(old[1], new[1]), (text, old, new)


# -- parsing -------------------------------------------------------------------------------------

#: Strings with what the two parsers treat differently: lone surrogates, escapes, controls.
awkward_text = st.text(
    alphabet=st.characters(exclude_categories=())
    | st.sampled_from(
        ["\ud800", "\udfff", "\ud83d", "\ude00", "\x00", "\x1f", "\u2028", "\\", '"']
    ),
    max_size=8,
)
#: Number literals, valid and not: signs, leading zeros, exponents, long mantissas.
_NUMBER = r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,4})?"
number_literals = st.from_regex(_NUMBER, fullmatch=True) | st.from_regex(
    r"[-+]?[0-9.eE+-]{1,12}", fullmatch=True
)
#: Tokens json.loads accepts beyond JSON (NaN, infinities) and near misses.
special_tokens = st.sampled_from(
    "NaN Infinity -Infinity +Infinity -NaN nan inf true True null None".split()
)


def escaped(text: str) -> str:
    """``text`` as a JSON string with every non-ASCII character ``\\u``-escaped (so lone
    surrogates become escapes, as the standard library writes them)."""
    return json.dumps(text)


json_like: st.SearchStrategy[str] = st.recursive(
    number_literals
    | special_tokens
    | awkward_text.map(escaped)
    | awkward_text.map(lambda t: json.dumps(t, ensure_ascii=False)),
    lambda children: (
        st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
        | st.lists(st.tuples(awkward_text.map(escaped), children), max_size=4).map(
            # duplicate keys are possible: both keep the last value at the first key's place
            lambda kvs: "{" + ",".join(f"{k}:{v}" for k, v in kvs) + "}"
        )
    ),
    max_leaves=12,
)


@given(json_like, st.sampled_from(["", " ", "\n\t", "x", ",", "]"]))
def test_parsers_agree_on_json_like_text(text: str, suffix: str) -> None:
    assert_parsers_agree(text)
    assert_parsers_agree(" " + text + suffix)


@given(json_like, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"]))
def test_parsers_agree_on_encoded_text(text: str, encoding: str) -> None:
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:  # a lone surrogate has no encoding
        return
    assert_parsers_agree(data)


@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=30))
def test_parsers_agree_on_any_text(text: str) -> None:
    assert_parsers_agree(text)


@given(st.binary(max_size=30))
def test_parsers_agree_on_any_bytes(data: bytes) -> None:
    assert_parsers_agree(data)


@given(st.floats(allow_nan=False))
def test_parsers_agree_on_floats(value: float) -> None:
    assert_parsers_agree(repr(value) if math.isfinite(value) else json.dumps(value))
    assert_parsers_agree(json.dumps([value, {"v": value}]))


@pytest.mark.parametrize(
    "text",
    [
        "9" * 4300,  # Python's default limit on integer digits: both read it
        "-" + "9" * 4300,
        "9" * 4301,  # one more: both refuse
        "9" * 4400 + ".0",  # a float literal that long: json.loads reads it (inf)
        "1" + "0" * 5000 + "e-5000",
        "1e400",
        "-1e400",
        "1e-400",
        '"\\ud800"',  # an escaped lone surrogate: json.loads takes it
        '"\\udc00\\ud800"',
        '{"a":1,"b":2,"a":3}',
        "[" * 150 + "]" * 150,
        "[" * 250 + "]" * 250,  # past pydantic's nesting limit, within Python's
        "[" * 5000 + "]" * 5000,  # past both
        "\ufeff{}",
        "NaN",
        "[-Infinity]",
    ],
)
def test_parsers_agree_at_the_edges(text: str) -> None:
    assert_parsers_agree(text)
    assert_parsers_agree(text.encode())


# -- encoding ------------------------------------------------------------------------------------

#: Integers around Python's limit on digits (4300 by default), which the standard library's
#: encoder enforces and pydantic's does not.
long_integers = st.integers(min_value=4290, max_value=4310).flatmap(
    lambda digits: st.sampled_from([10**digits - 1, -(10**digits - 1), 10**digits])
)
plain_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | long_integers
    | st.floats()  # NaN and infinities included: both must refuse them
    | awkward_text
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "9" * 4301]),  # harmless inside strings
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(awkward_text, children, max_size=4)
    ),
    max_leaves=12,
)


def assert_encoders_agree(value: Any) -> None:
    old, new = outcome(STDLIB_ENCODER.encode, value), outcome(dump_plain_json, value)
    assert old[0] == new[0], (value, old, new)
    if old[0] == "ok":
        assert same(json.loads(old[1]), json.loads(new[1])), (value, old, new)
        assert same(parse_json(new[1]), json.loads(old[1]))


@given(plain_values)
def test_encoders_agree_on_plain_values(value: Any) -> None:
    assert_encoders_agree(value)
    assert_encoders_agree({"metadata": {"name": "x"}, "spec": value})


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = {"a": [value]}
    return value


@pytest.mark.parametrize("depth", [50, 150, 400])
def test_encoders_agree_on_deep_nesting(depth: int) -> None:
    """pydantic stops at a depth the standard library goes past: the latter decides."""
    assert_encoders_agree(nested(depth))


def test_encoders_agree_on_what_json_refuses() -> None:
    for value in (
        float("nan"),
        {"a": [1.0, float("inf")]},
        {"a": -float("inf")},
        {"n": 10**4300},
        {"s": "\ud800", "\udfff": 1},  # the standard library escapes lone surrogates
    ):
        assert_encoders_agree(value)


def test_non_ascii_is_written_as_utf8_and_reads_back_equal() -> None:
    value = {"name": "caf\u00e9 \U0001f600", "n": 1e-7, "big": 2**80}
    text = dump_plain_json(value)
    assert "caf\u00e9" in text
    assert json.loads(text) == value == json.loads(STDLIB_ENCODER.encode(value))
