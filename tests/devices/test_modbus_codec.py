"""Modbus registers <-> typed values: KubeEdge's visitor keys, scale, byte and register swap."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from devices.drivers.modbus_codec import (
    ModbusVisitor,
    decode_bits,
    decode_registers,
    encode_bits,
    encode_registers,
    plan_reads,
)
from devices.values import format_value
from wire.errors import PropertyError


def visitor(**config: Any) -> ModbusVisitor:
    return ModbusVisitor.model_validate({"register": "HoldingRegister", **config})


def test_kubeedge_sample_visitor_parses() -> None:
    """KubeEdge's v1beta1 sample configData (with its own spellings) parses as written."""
    v = ModbusVisitor.model_validate(
        {
            "register": "HoldingRegister",
            "offset": 2,
            "limit": 1,
            "scale": 1,
            "isSwap": True,
            "isRegisterSwap": True,
            "dataType": "int",  # extra keys of other mappers are ignored
        }
    )
    assert (v.table, v.offset, v.limit, v.scale, v.is_swap, v.is_register_swap) == (
        "HoldingRegister",
        2,
        1,
        1.0,
        True,
        True,
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"register": "SoftRegister"}, "register"),
        ({"register": "HoldingRegister", "offset": 70000}, "offset"),
        ({"register": "HoldingRegister", "offset": -1}, "offset"),
        ({"register": "HoldingRegister", "offset": 65535, "limit": 2}, "runs past"),
        ({"register": "HoldingRegister", "limit": 200}, "above 125"),
        ({"register": "HoldingRegister", "scale": 0}, "scale"),
    ],
)
def test_bad_visitors_are_refused_with_the_field(config: dict[str, Any], message: str) -> None:
    """Unknown register types, offsets out of range, zero scale: a clear validation error."""
    with pytest.raises(ValidationError, match=message):
        ModbusVisitor.model_validate(config)


def test_swaps_follow_kubeedge() -> None:
    """isRegisterSwap reverses the registers, isSwap the bytes within each register."""
    raw = list(struct.unpack(">2H", struct.pack(">i", 0x01020304)))
    assert decode_registers(raw, visitor(limit=2), "INT") == 0x01020304
    words = [raw[1], raw[0]]
    assert decode_registers(words, visitor(limit=2, isRegisterSwap=True), "INT") == 0x01020304
    swapped = [0x0201, 0x0403]
    assert decode_registers(swapped, visitor(limit=2, isSwap=True), "INT") == 0x01020304
    both = [0x0403, 0x0201]
    assert (
        decode_registers(both, visitor(limit=2, isSwap=True, isRegisterSwap=True), "INT")
        == 0x01020304
    )


def test_signed_registers_scale_and_print_short() -> None:
    """A register is signed; scale 0.1 on 217 prints 21.7 and on -40 prints -4."""
    v = visitor(scale=0.1)
    assert format_value("FLOAT", decode_registers([217], v, "FLOAT")) == "21.7"
    assert format_value("FLOAT", decode_registers([0xFFD8], v, "FLOAT")) == "-4"
    assert encode_registers(21.7, v, "FLOAT") == [217]
    assert encode_registers(-4.0, v, "FLOAT") == [0xFFD8]


@pytest.mark.parametrize(
    ("value", "config", "type_", "message"),
    [
        (70000, {}, "INT", "does not fit"),
        (327680, {"scale": 10}, "INT", "does not fit"),
        (2**31, {"limit": 2}, "INT", "does not fit"),
        ("hello world", {"limit": 2}, "STRING", "longer than 4 bytes"),
        (1e39, {"limit": 2}, "FLOAT", "32-bit float"),
    ],
)
def test_values_that_do_not_fit_are_refused(
    value: Any, config: dict[str, Any], type_: str, message: str
) -> None:
    """A value outside what the span holds is refused with a reason, never truncated."""
    with pytest.raises(PropertyError, match=message):
        encode_registers(value, visitor(**config), type_)


def test_coils_hold_booleans() -> None:
    """A coil reads and writes as a BOOLEAN; a negative number does not fit one."""
    v = ModbusVisitor.model_validate({"register": "CoilRegister", "offset": 3})
    assert decode_bits([True, False], v, "BOOLEAN") is True
    assert encode_bits(False, v, "BOOLEAN") == [False]
    with pytest.raises(PropertyError):
        encode_bits(-1, v, "INT")
    with pytest.raises(PropertyError, match="holds bits"):
        decode_bits([True], v, "STRING")


swaps = st.fixed_dictionaries({"isSwap": st.booleans(), "isRegisterSwap": st.booleans()})


@given(limit=st.sampled_from([1, 2, 4]), data=st.data(), flags=swaps)
def test_int_round_trips_through_registers(limit: int, data: st.DataObject, flags: Any) -> None:
    """Any integer the span holds encodes and decodes to itself, whatever the swaps."""
    bits = 16 * limit
    n = data.draw(st.integers(min_value=-(2 ** (bits - 1)), max_value=2 ** (bits - 1) - 1))
    v = visitor(limit=limit, **flags)
    regs = encode_registers(n, v, "INT")
    assert len(regs) == limit and all(0 <= r <= 0xFFFF for r in regs)
    assert decode_registers(regs, v, "INT") == n


@given(
    limit=st.sampled_from([2, 4]),
    x=st.floats(allow_nan=False, allow_infinity=False, width=32),
    scale=st.sampled_from([1.0, 0.1, 0.01, 10.0]),
    flags=swaps,
)
def test_float_round_trips_through_registers(
    limit: int, x: float, scale: float, flags: Any
) -> None:
    """A FLOAT or DOUBLE written then read gives the value back at the type's precision."""
    v = visitor(limit=limit, scale=scale, **flags)
    type_ = "FLOAT" if limit == 2 else "DOUBLE"
    try:
        regs = encode_registers(x, v, type_)
    except PropertyError:
        assert abs(x / scale) > 3.4e38  # only overflow is refused
        return
    back = decode_registers(regs, v, type_)
    assert isinstance(back, float)
    assert math.isclose(back, x, rel_tol=1e-6, abs_tol=1e-30) or (
        abs(x) < 1e-37 and abs(back) < 1e-36
    )


@given(text=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=8))
def test_string_round_trips(text: str) -> None:
    """An ASCII string up to the span's bytes comes back as written."""
    v = visitor(limit=4)
    assert decode_registers(encode_registers(text, v, "STRING"), v, "STRING") == text


spans = st.lists(
    st.tuples(
        st.sampled_from(["HoldingRegister", "InputRegister", "CoilRegister"]),
        st.integers(min_value=0, max_value=300),
        st.integers(min_value=1, max_value=4),
    ),
    min_size=1,
    max_size=20,
)


@given(spans)
def test_planned_reads_cover_every_property_within_modbus_limits(
    specs: list[tuple[str, int, int]],
) -> None:
    """Each property lies in exactly one request of its own table; requests respect 125/2000."""
    visitors = [
        (f"p{i}", ModbusVisitor.model_validate({"register": t, "offset": o, "limit": n}))
        for i, (t, o, n) in enumerate(specs)
    ]
    plan = plan_reads(visitors)
    seen = [name for span in plan for name, _ in span.members]
    assert sorted(seen) == sorted(name for name, _ in visitors)
    for span in plan:
        assert span.count <= (2000 if span.table == "CoilRegister" else 125)
        for _, v in span.members:
            assert v.table == span.table
            assert span.offset <= v.offset and v.offset + v.limit <= span.offset + span.count


def test_adjacent_registers_share_one_request() -> None:
    """Five neighbouring holding registers are one request; a far one is another."""
    near = [(f"p{i}", visitor(offset=i)) for i in range(5)]
    far = [("far", visitor(offset=100))]
    plan = plan_reads(near + far)
    assert [(s.offset, s.count, len(s.members)) for s in plan] == [(0, 5, 5), (100, 1, 1)]
