"""Modbus registers <-> typed values, pure: the visitor's ``configData`` and the value rules.

KubeEdge's Modbus visitor (``visitors.configData``) names a table and a span:
``register`` (``CoilRegister``, ``DiscreteInputRegister``, ``HoldingRegister``,
``InputRegister``), ``offset`` (the first address, 0-based), ``limit`` (how many bits or 16-bit
registers), ``scale`` (engineering value = raw value x scale), ``isSwap`` and
``isRegisterSwap``. KubeEdge's Modbus mapper reads registers big-endian (the Modbus order),
then reverses the order of the registers when ``isRegisterSwap`` is set (a 32-bit value whose
low word comes first) and swaps the two bytes of every register when ``isSwap`` is set; both
are their own inverse and commute, so a write applies the same two swaps.

How the raw bytes become the model's type, by ``limit``:

======== ============== ================ ==================== ==========
type     limit 1         limit 2          limit 4              bits
======== ============== ================ ==================== ==========
INT      int16           int32            int64                0 / 1
FLOAT    int16 x scale   float32 x scale  float64 x scale      0 / 1
DOUBLE   int16 x scale   float32 x scale  float64 x scale      0 / 1
BOOLEAN  register != 0    any register != 0 any register != 0     the bit
STRING   ASCII of the registers, trailing NULs and blanks dropped
======== ============== ================ ==================== ==========

Integers are signed (two's complement), as sensors report negative temperatures. A write is
the inverse: the value divided by ``scale``, rounded for integer registers, and refused with a
reason when it does not fit (``70000`` into one register, ``-1`` into a coil, a string longer
than the span). Coils and discrete inputs hold one bit per address.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from devices.values import Value
from wire.devicemodel import BOOLEAN, DOUBLE, FLOAT, INT, STRING
from wire.errors import PropertyError

Register = Literal["CoilRegister", "DiscreteInputRegister", "HoldingRegister", "InputRegister"]
BIT_REGISTERS: Final = frozenset({"CoilRegister", "DiscreteInputRegister"})
WRITABLE_REGISTERS: Final = frozenset({"CoilRegister", "HoldingRegister"})
#: the highest Modbus address
MAX_ADDRESS: Final = 0xFFFF
#: registers one read may ask for (Modbus: 125 registers, 2000 bits per request)
MAX_REGISTERS: Final = 125
MAX_BITS: Final = 2000


class ModbusVisitor(BaseModel):
    """``visitors.configData`` of a Modbus property (KubeEdge's keys)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    table: Register = Field(alias="register")
    offset: int = Field(default=0, ge=0, le=MAX_ADDRESS)
    limit: int = Field(default=1, ge=1)
    scale: float = 1.0
    is_swap: bool = Field(default=False, alias="isSwap")
    is_register_swap: bool = Field(default=False, alias="isRegisterSwap")

    @field_validator("scale", mode="before")
    @classmethod
    def _scale(cls, value: object) -> object:
        # KubeEdge samples write scale as 1, 1.0, "0.1"; zero would make writes divide by zero
        if value in (None, ""):
            return 1.0
        return value

    @model_validator(mode="after")
    def _span(self) -> ModbusVisitor:
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ValueError("scale must be a finite, non-zero number")
        most = MAX_BITS if self.table in BIT_REGISTERS else MAX_REGISTERS
        if self.limit > most:
            raise ValueError(f"limit {self.limit} is above {most} for {self.table}")
        if self.offset + self.limit - 1 > MAX_ADDRESS:
            raise ValueError(
                f"offset {self.offset} + limit {self.limit} runs past address {MAX_ADDRESS}"
            )
        return self

    @property
    def bits(self) -> bool:
        """Coils and discrete inputs: one bit per address."""
        return self.table in BIT_REGISTERS

    @property
    def writable(self) -> bool:
        """Only coils and holding registers take writes."""
        return self.table in WRITABLE_REGISTERS


def check_type(visitor: ModbusVisitor, type_: str) -> str | None:
    """Why the span cannot hold ``type_``, or ``None`` when it can."""
    if visitor.bits:
        if type_ in (INT, FLOAT, DOUBLE, BOOLEAN):
            return None
        return f"{visitor.table} holds bits, not {type_}"
    if type_ in (INT, FLOAT, DOUBLE) and visitor.limit not in (1, 2, 4):
        return f"a {type_} spans 1, 2 or 4 registers, not limit {visitor.limit}"
    return None


def _to_bytes(registers: list[int], visitor: ModbusVisitor) -> bytes:
    words = list(registers)
    if visitor.is_register_swap:
        words.reverse()
    raw = b"".join((w & 0xFFFF).to_bytes(2, "big") for w in words)
    if visitor.is_swap:
        raw = _swap_bytes(raw)
    return raw


def _from_bytes(raw: bytes, visitor: ModbusVisitor) -> list[int]:
    if visitor.is_swap:
        raw = _swap_bytes(raw)
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if visitor.is_register_swap:
        words.reverse()
    return words


def _swap_bytes(raw: bytes) -> bytes:
    out = bytearray(raw)
    out[0::2], out[1::2] = raw[1::2], raw[0::2]
    return bytes(out)


_INT_FORMATS: Final = {1: ">h", 2: ">i", 4: ">q"}
_FLOAT_FORMATS: Final = {2: ">f", 4: ">d"}


def decode_registers(registers: list[int], visitor: ModbusVisitor, type_: str) -> Value:
    """The value of ``type_`` that 16-bit ``registers`` (as read, in address order) hold.

    Raises:
        PropertyError: the span does not hold a ``type_`` or the device sent a short answer.
    """
    if len(registers) != visitor.limit:
        raise PropertyError(f"device sent {len(registers)} registers, expected {visitor.limit}")
    if visitor.limit == 1 and not visitor.is_swap and type_ in (INT, FLOAT, DOUBLE):
        # the common case (one plain register) without the byte shuffling: a signed 16 bits
        word = registers[0] & 0xFFFF
        number = word - 0x10000 if word & 0x8000 else word
        if type_ == INT:
            return round(number * visitor.scale) if visitor.scale != 1 else number
        return float(number) * visitor.scale
    reason = check_type(visitor, type_)
    if reason:
        raise PropertyError(reason)
    raw = _to_bytes(registers, visitor)
    if type_ == BOOLEAN:
        return any(raw)
    if type_ == STRING:
        return raw.rstrip(b"\x00 ").decode("ascii", errors="replace")
    if type_ == INT:
        (number,) = struct.unpack(_INT_FORMATS[visitor.limit], raw)
        return round(number * visitor.scale) if visitor.scale != 1 else int(number)
    fmt = _FLOAT_FORMATS.get(visitor.limit)
    value = struct.unpack(fmt, raw)[0] if fmt else struct.unpack(">h", raw)[0]
    return float(value) * visitor.scale


def encode_registers(value: Value, visitor: ModbusVisitor, type_: str) -> list[int]:
    """The 16-bit registers (in address order) that hold ``value`` as ``type_``.

    Raises:
        PropertyError: the value does not fit the span, or the span does not hold ``type_``.
    """
    reason = check_type(visitor, type_)
    if reason:
        raise PropertyError(reason)
    nbytes = 2 * visitor.limit
    if type_ == BOOLEAN:
        raw = (1 if value else 0).to_bytes(nbytes, "big")
    elif type_ == STRING:
        data = str(value).encode("ascii", errors="strict")
        if len(data) > nbytes:
            raise PropertyError(f"{value!r} is longer than {nbytes} bytes ({visitor.limit} regs)")
        raw = data.ljust(nbytes, b"\x00")
    else:
        raw = _pack_number(value, visitor, type_)
    return _from_bytes(raw, visitor)


def _pack_number(value: Value, visitor: ModbusVisitor, type_: str) -> bytes:
    if isinstance(value, str | bool):
        raise PropertyError(f"{value!r} is not a number")
    # an integer at scale 1 stays an integer: float division would round above 2**53
    scaled = value if visitor.scale == 1 else value / visitor.scale
    fmt = _FLOAT_FORMATS.get(visitor.limit) if type_ != INT else None
    if fmt is not None:
        if fmt == ">f" and abs(scaled) > 3.4028234663852886e38:
            raise PropertyError(f"{value} does not fit a 32-bit float")
        return struct.pack(fmt, scaled)
    if isinstance(scaled, float) and not math.isfinite(scaled):
        raise PropertyError(f"{value} is not a finite number")
    whole = round(scaled)
    bits = 16 * visitor.limit
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if not low <= whole <= high:
        scale = f" at scale {visitor.scale:g}" if visitor.scale != 1 else ""
        raise PropertyError(
            f"{value} does not fit {visitor.limit} register(s){scale} ({low}..{high})"
        )
    return whole.to_bytes(2 * visitor.limit, "big", signed=True)


def decode_bits(bits: list[bool], visitor: ModbusVisitor, type_: str) -> Value:
    """The value a coil or discrete input holds: its first bit (``limit`` bits for an INT)."""
    reason = check_type(visitor, type_)
    if reason:
        raise PropertyError(reason)
    if len(bits) < visitor.limit:
        raise PropertyError(f"device sent {len(bits)} bits, expected {visitor.limit}")
    if type_ == BOOLEAN:
        return bool(bits[0])
    # several bits as an unsigned number, lowest address = lowest bit
    number = sum(1 << i for i, b in enumerate(bits[: visitor.limit]) if b)
    return number if type_ == INT else float(number) * visitor.scale


def encode_bits(value: Value, visitor: ModbusVisitor, type_: str) -> list[bool]:
    """The bits to write to coils for ``value``.

    Raises:
        PropertyError: a number that is not representable in ``limit`` bits.
    """
    reason = check_type(visitor, type_)
    if reason:
        raise PropertyError(reason)
    if isinstance(value, bool) or type_ == BOOLEAN:
        return [bool(value)] + [False] * (visitor.limit - 1)
    if isinstance(value, str):
        raise PropertyError(f"{value!r} is not a number")
    number = round(value / visitor.scale) if type_ != INT else round(value)
    if not 0 <= number < 2**visitor.limit:
        raise PropertyError(
            f"{value} does not fit {visitor.limit} coil(s) (0..{2**visitor.limit - 1})"
        )
    return [bool(number >> i & 1) for i in range(visitor.limit)]


#: registers (or bits) a batched read may skip between two properties: reading a few unused
#: registers costs less than another request
MAX_GAP: Final = 8


@dataclass(frozen=True, slots=True)
class Span:
    """One Modbus request covering several properties of one table."""

    table: str
    offset: int
    count: int
    #: property name -> its visitor (each lies within the span)
    members: tuple[tuple[str, ModbusVisitor], ...]


def plan_reads(visitors: list[tuple[str, ModbusVisitor]]) -> list[Span]:
    """Group properties due together into as few requests as the Modbus limits allow.

    Properties of one table whose spans are at most :data:`MAX_GAP` apart share a request, up
    to 125 registers (2000 bits) per request. Order of the result: by table, then address.
    """
    out: list[Span] = []
    ordered = sorted(visitors, key=lambda nv: (nv[1].table, nv[1].offset, nv[1].limit))
    current: list[tuple[str, ModbusVisitor]] = []
    start = end = 0

    def close() -> None:
        if current:
            out.append(Span(current[0][1].table, start, end - start, tuple(current)))

    for name, v in ordered:
        most = MAX_BITS if v.bits else MAX_REGISTERS
        v_end = v.offset + v.limit
        if (
            current
            and current[0][1].table == v.table
            and v.offset - end <= MAX_GAP
            and max(end, v_end) - start <= most
        ):
            current.append((name, v))
            end = max(end, v_end)
            continue
        close()
        current, start, end = [(name, v)], v.offset, v_end
    close()
    return out
