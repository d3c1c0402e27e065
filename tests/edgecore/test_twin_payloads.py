"""KubeEdge's MQTT twin payloads: lenient where harmless, strict where guessing would store junk."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from edgecore.devicetwin.mqtt_handlers import _update_from_json, decode, validate
from wire import twin as m
from wire.twin import (
    StateUpdateIn,
    TwinUpdateIn,
    dump,
    first_error,
    msg_twin,
    twin_json,
)


def test_update_accepts_kubeedge_shape_and_ignores_extras() -> None:
    """A mapper's update parses; unknown fields are ignored."""
    req = TwinUpdateIn.model_validate(
        {
            "event_id": 7,
            "timestamp": 1,
            "extra": True,
            "twin": {"t": {"actual": {"value": 21.5, "metadata": {"timestamp": 1}}, "x": 1}},
        }
    )
    assert req.event_id == "7"
    assert req.twin["t"].actual is not None and req.twin["t"].actual.value == "21.5"


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"twin": {"t": {"actual": {"value": None}}}}, "twin.t.actual.value"),
        ({"twin": {"t": {"actual": {}}}}, "twin.t.actual.value"),
        ({"twin": {"t": {}}}, "twin.t"),
        ({"twin": "x"}, "twin"),
    ],
)
def test_update_refusals_say_where(payload: dict[str, object], where: str) -> None:
    """A refused payload's reason starts with the path of the problem."""
    with pytest.raises(ValidationError) as info:
        TwinUpdateIn.model_validate(payload)
    assert first_error(info.value).startswith(where + ":")


def test_boolean_values_become_text() -> None:
    """JSON booleans are taken as ``true``/``false``."""
    req = TwinUpdateIn.model_validate({"twin": {"p": {"expected": {"value": False}}}})
    assert req.twin["p"].expected is not None and req.twin["p"].expected.value == "false"


def test_state_must_be_non_empty() -> None:
    """A state update needs a non-empty state."""
    with pytest.raises(ValidationError):
        StateUpdateIn.model_validate({"state": ""})
    assert StateUpdateIn.model_validate({"state": "online"}).state == "online"


def test_msg_twin_omits_absent_fields_and_tombstone_value() -> None:
    """Output leaves out what is absent; a removed expected keeps its metadata, not a value."""
    twin = m.Twin(
        expected=m.cloud_removed(generation=2, timestamp=5),
        actual=m.reported("1", hlc=9, timestamp=9),
    )
    out = dump(msg_twin(twin, type_="float"))
    assert out == {
        "expected": {"metadata": {"timestamp": 5}},
        "actual": {"value": "1", "metadata": {"timestamp": 9}},
        "metadata": {"type": "float"},
        "expected_version": {"cloud": 2, "edge": 0},
        "actual_version": {"cloud": 0, "edge": 9},
    }
    assert "expected_version" not in dump(msg_twin(twin, versions=False))


values = st.builds(
    m.TwinValue,
    value=st.one_of(st.none(), st.text(max_size=3)),
    cloud=st.integers(min_value=0, max_value=2**40),
    edge=st.integers(min_value=0, max_value=2**40),
    timestamp=st.integers(min_value=0, max_value=2**45),
    deleted=st.booleans(),
)


@given(
    twin=st.builds(m.Twin, expected=st.none() | values, actual=st.none() | values),
    type_=st.sampled_from(["", "float", "int"]),
    optional=st.none() | st.booleans(),
    versions=st.booleans(),
)
def test_fast_builder_equals_model_dump(
    twin: m.Twin, type_: str, optional: bool | None, versions: bool
) -> None:
    """The hot-path dict builder gives exactly the MsgTwin model's dump."""
    kw = {"type_": type_, "optional": optional, "versions": versions}
    assert twin_json(twin, **kw) == dump(msg_twin(twin, **kw))  # type: ignore[arg-type]


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_value = st.fixed_dictionaries({"value": _json}, optional={"metadata": _json})
_prop = st.fixed_dictionaries(
    {},
    optional={
        "actual": _value | _json,
        "expected": _value | _json,
        "optional": _json,
        "metadata": _json,
    },
)
_updates = st.fixed_dictionaries(
    {"twin": st.dictionaries(st.text(max_size=6), _prop | _json, max_size=3) | _json},
    optional={"event_id": _json, "timestamp": _json},
)


@given(_updates)
def test_one_step_update_parse_agrees_with_two_step(payload: dict[str, object]) -> None:
    """Whatever the one-step JSON parse accepts, json.loads + the model accepts as the same."""
    text = json.dumps(payload)
    fast = _update_from_json(text)
    if fast is not None:
        obj = decode(text)
        assert isinstance(obj, dict)
        assert validate(TwinUpdateIn, obj) == fast
