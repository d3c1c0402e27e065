"""Modbus TCP and RTU, through pymodbus's async clients.

``spec.protocol.configData`` is KubeEdge's: ``{ip, port}`` (TCP) or ``{serialPort, baudRate,
dataBits, parity, stopBits}`` (RTU over a serial line), both with an optional ``slaveID``
(the unit id, default 1). Which one is meant follows from the keys (``communicateMode: TCP|RTU``
may say it explicitly, as some KubeEdge samples do). Ports and numbers may be written as strings
(``port: "502"``), as KubeEdge's samples do. Visitors: :mod:`devices.drivers.modbus_codec`.

Errors: a Modbus exception response (illegal address, illegal value) is the device refusing one
property (:class:`~wire.errors.PropertyError`); no connection, a timeout or a broken frame is
the device not answering (:class:`~wire.errors.DeviceUnreachable`). pymodbus's own reconnects
and retries are off: the mapper decides when to retry, with back-off, and marks the device
offline meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from devices.config import DeviceConfig, Visitor
from devices.drivers.modbus_codec import (
    BIT_REGISTERS,
    ModbusVisitor,
    Span,
    check_type,
    decode_bits,
    decode_registers,
    encode_bits,
    encode_registers,
    plan_reads,
)
from devices.values import Value
from wire.errors import ConfigError, DeviceUnreachable, PropertyError

log = logging.getLogger(__name__)

#: seconds a request may take, at most and at least, whatever the collect cycle
MAX_TIMEOUT = 3.0
MIN_TIMEOUT = 0.5

_PARITY = {"none": "N", "n": "N", "even": "E", "e": "E", "odd": "O", "o": "O"}


class ModbusTcp(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    ip: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    slave_id: int = Field(default=1, ge=0, le=255, alias="slaveID")


class ModbusRtu(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    serial_port: str = Field(min_length=1, alias="serialPort")
    baud_rate: int = Field(default=19200, gt=0, alias="baudRate")
    data_bits: Literal[5, 6, 7, 8] = Field(default=8, alias="dataBits")
    parity: str = "none"
    stop_bits: Literal[1, 2] = Field(default=1, alias="stopBits")
    slave_id: int = Field(default=1, ge=0, le=255, alias="slaveID")

    @field_validator("parity")
    @classmethod
    def _parity(cls, value: str) -> str:
        code = _PARITY.get(value.strip().lower())
        if code is None:
            raise ValueError("parity must be none, even or odd")
        return code


def _first(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


_Client = TypeVar("_Client", AsyncModbusTcpClient, AsyncModbusSerialClient)


async def _open(client: _Client, where: str, refused: str) -> _Client:
    """``client``, connected; else closed, and DeviceUnreachable ``modbus WHERE: reason``
    (``refused`` when pymodbus gives no reason)."""
    try:
        ok = await client.connect()
    except (ModbusException, OSError) as exc:
        client.close()
        raise DeviceUnreachable(f"modbus {where}: {exc}") from exc
    if not ok:
        client.close()
        raise DeviceUnreachable(f"modbus {where}: {refused}")
    return client


def parse_protocol(config: dict[str, Any]) -> ModbusTcp | ModbusRtu:
    """TCP or RTU settings from ``protocol.configData``.

    Raises:
        ValueError: neither shape, or a bad field (the message names it).
    """
    mode = str(config.get("communicateMode", "")).upper()
    rtu = mode == "RTU" or (mode != "TCP" and "serialPort" in config)
    try:
        if rtu:
            return ModbusRtu.model_validate(config)
        return ModbusTcp.model_validate(config)
    except ValidationError as exc:
        raise ValueError(_first(exc)) from exc


class SerialLines:
    """Serial ports shared by the devices on one RS-485 line: one pymodbus client per port.

    Several Devices with different ``slaveID`` on one port is the usual RTU wiring; opening the
    port once per device would fail (or garble frames). pymodbus serialises the requests of one
    client, so the devices take turns on the line. The port is closed when its last device lets
    go (a broken line makes every device on it let go, and the next connect reopens it).
    """

    def __init__(self) -> None:
        self._lines: dict[str, tuple[AsyncModbusSerialClient, set[int]]] = {}

    async def acquire(self, owner: int, link: ModbusRtu, timeout: float) -> AsyncModbusSerialClient:
        """The client for ``link.serial_port``, opened if no device holds it yet.

        Raises:
            DeviceUnreachable: the port cannot be opened.
        """
        held = self._lines.get(link.serial_port)
        if held is not None and held[0].connected:
            held[1].add(owner)
            return held[0]
        client = AsyncModbusSerialClient(
            link.serial_port,
            baudrate=link.baud_rate,
            bytesize=link.data_bits,
            parity=link.parity,
            stopbits=link.stop_bits,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
        )
        await _open(client, link.serial_port, "the port cannot be opened")
        if held is not None:
            held[0].close()
        self._lines[link.serial_port] = (client, {owner})
        return client

    def release(self, owner: int, port: str) -> None:
        """``owner`` no longer uses ``port``; the last one out closes it."""
        held = self._lines.get(port)
        if held is None:
            return
        held[1].discard(owner)
        if not held[1]:
            held[0].close()
            del self._lines[port]


#: one per process, as the serial ports themselves are
SERIAL_LINES = SerialLines()


class ModbusDriver:
    """A Modbus device (TCP or RTU) behind one pymodbus client.

    Raises:
        ConfigError: bad protocol or visitor configData (one line, naming the field).
    """

    def __init__(self, device: DeviceConfig) -> None:
        where = f"device {device.key}"
        try:
            self._link = parse_protocol(dict(device.protocol_config))
        except ValueError as exc:
            raise ConfigError(f"{where}: protocol configData: {exc}") from exc
        self._visitors: dict[str, ModbusVisitor] = {}
        for v in device.properties:
            try:
                parsed = ModbusVisitor.model_validate(dict(v.config))
            except ValidationError as exc:
                raise ConfigError(f"{where}: property {v.name}: {_first(exc)}") from exc
            reason = check_type(parsed, v.type)
            if reason:
                raise ConfigError(f"{where}: property {v.name}: {reason}")
            self._visitors[v.name] = parsed
        self._timeout = min(MAX_TIMEOUT, max(MIN_TIMEOUT, device.collect_cycle))
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        #: read plans by the tuple of property names due together
        self._plans: dict[tuple[str, ...], list[Span]] = {}

    @property
    def address(self) -> str:
        """Where the device is, for log lines."""
        if isinstance(self._link, ModbusTcp):
            return f"{self._link.ip}:{self._link.port} unit {self._link.slave_id}"
        return f"{self._link.serial_port} unit {self._link.slave_id}"

    async def connect(self) -> None:
        """Open the TCP connection, or share the serial line."""
        await self.close()
        link = self._link
        if isinstance(link, ModbusRtu):
            self._client = await SERIAL_LINES.acquire(id(self), link, self._timeout)
            return
        client = AsyncModbusTcpClient(
            link.ip, port=link.port, timeout=self._timeout, retries=0, reconnect_delay=0
        )
        self._client = await _open(client, self.address, "connection refused or no port")

    async def close(self) -> None:
        """Drop the connection (a shared serial line stays open for the other devices)."""
        if self._client is None:
            return
        if isinstance(self._link, ModbusRtu):
            SERIAL_LINES.release(id(self), self._link.serial_port)
        else:
            self._client.close()
        self._client = None

    def _connected(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is None or not self._client.connected:
            raise DeviceUnreachable(f"modbus {self.address}: not connected")
        return self._client

    def _visitor(self, visitor: Visitor) -> ModbusVisitor:
        found = self._visitors.get(visitor.name)
        if found is None:
            raise PropertyError(f"property {visitor.name} has no Modbus visitor")
        return found

    async def _request(self, table: str, offset: int, count: int) -> list[int] | list[bool]:
        """One read request: the registers (or bits) ``offset..offset+count-1`` of ``table``."""
        client = self._connected()
        unit = self._link.slave_id
        try:
            if table == "CoilRegister":
                rr = await client.read_coils(offset, count=count, device_id=unit)
            elif table == "DiscreteInputRegister":
                rr = await client.read_discrete_inputs(offset, count=count, device_id=unit)
            elif table == "HoldingRegister":
                rr = await client.read_holding_registers(offset, count=count, device_id=unit)
            else:
                rr = await client.read_input_registers(offset, count=count, device_id=unit)
        except (ConnectionException, ModbusIOException, OSError, TimeoutError) as exc:
            raise DeviceUnreachable(f"modbus {self.address}: {exc}") from exc
        except ModbusException as exc:
            raise PropertyError(f"{table} {offset}: {exc}") from exc
        if rr.isError():
            raise PropertyError(f"{table} {offset}+{count}: device refused ({rr})")
        return list(rr.bits) if table in BIT_REGISTERS else list(rr.registers)

    @staticmethod
    def _decode(raw: list[Any], mv: ModbusVisitor, type_: str) -> Value:
        if mv.bits:
            return decode_bits([bool(b) for b in raw], mv, type_)
        return decode_registers([int(r) for r in raw], mv, type_)

    async def read(self, visitor: Visitor) -> Value:
        """Read the property's span and decode it as the model's type."""
        mv = self._visitor(visitor)
        raw = await self._request(mv.table, mv.offset, mv.limit)
        return self._decode(raw, mv, visitor.type)

    async def read_many(self, visitors: list[Visitor]) -> dict[str, Value | PropertyError]:
        """Read several properties with as few requests as their addresses allow.

        Properties close together in one table share a request (:func:`plan_reads`); when the
        device refuses a shared request, its properties are read one by one, so one bad
        address fails only its own property.
        """
        by_name = {v.name: v for v in visitors}
        out: dict[str, Value | PropertyError] = {}
        key = tuple(by_name)
        plan = self._plans.get(key)
        if plan is None:
            planned = [
                (v.name, self._visitors[v.name]) for v in visitors if v.name in self._visitors
            ]
            # the same properties come due together every cycle: plan once per set
            plan = self._plans[key] = plan_reads(planned)
        for name in by_name:
            if name not in self._visitors:
                out[name] = PropertyError(f"property {name} has no Modbus visitor")
        for span in plan:
            try:
                raw = await self._request(span.table, span.offset, span.count)
            except PropertyError as exc:
                if len(span.members) == 1:
                    out[span.members[0][0]] = exc
                    continue
                for name, _mv in span.members:
                    try:
                        out[name] = await self.read(by_name[name])
                    except PropertyError as one:
                        out[name] = one
                continue
            for name, mv in span.members:
                start = mv.offset - span.offset
                try:
                    out[name] = self._decode(raw[start : start + mv.limit], mv, by_name[name].type)
                except PropertyError as exc:
                    out[name] = exc
        return out

    async def write(self, visitor: Visitor, value: Value) -> None:
        """Encode ``value`` for the property's span and write it."""
        mv = self._visitor(visitor)
        if not mv.writable:
            raise PropertyError(f"{mv.table} is read-only on a Modbus device")
        unit = self._link.slave_id
        if mv.bits:
            bits = encode_bits(value, mv, visitor.type)
            client = self._connected()
            call = (
                client.write_coil(mv.offset, bits[0], device_id=unit)
                if len(bits) == 1
                else client.write_coils(mv.offset, bits, device_id=unit)
            )
        else:
            regs = encode_registers(value, mv, visitor.type)
            client = self._connected()
            call = client.write_registers(mv.offset, regs, device_id=unit)
        try:
            rr = await call
        except (ConnectionException, ModbusIOException, OSError, TimeoutError) as exc:
            raise DeviceUnreachable(f"modbus {self.address}: {exc}") from exc
        except ModbusException as exc:
            raise PropertyError(f"{mv.table} {mv.offset}: {exc}") from exc
        if rr.isError():
            raise PropertyError(f"{mv.table} {mv.offset}: device refused the write ({rr})")
