"""Real field devices on loopback for the mapper tests: pymodbus and asyncua servers.

``ModbusDevice`` is pymodbus's own async server with a datastore (every unit id has 100 coils,
discrete inputs, holding and input registers from address 0), on a free port, stoppable and
restartable on the same port (a device that is switched off and on again). ``poke``/``peek``
change and read registers through a second Modbus client, as an operator at the device would.

``OpcUaDevice`` is asyncua's server with a few variables under namespace 2 (``ns=2;s=NAME``).

``device_objects`` builds the KubeEdge v1beta1 DeviceModel + Device dicts the tests serve.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import Any

from asyncua import ua
from asyncua.server.server import Server
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator.simdata import SimData
from pymodbus.simulator.simdevice import SimDevice
from pymodbus.simulator.simutils import DataType

from tests.support.procs import free_port

SIZE = 100

# pymodbus and asyncua log every frame at INFO/DEBUG; the tests' logs are about the mapper
for _name in ("pymodbus", "asyncua"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def sim_device(unit: int, holding: list[int] | None = None) -> SimDevice:
    """One unit id with its four tables (KubeEdge's four register types)."""
    hr = list(holding or []) + [0] * (SIZE - len(holding or []))
    return SimDevice(
        unit,
        simdata=(
            [SimData(0, values=[False] * SIZE, datatype=DataType.BITS)],
            [SimData(0, values=[False] * SIZE, datatype=DataType.BITS)],
            [SimData(0, values=hr, datatype=DataType.REGISTERS)],
            [SimData(0, values=[0] * SIZE, datatype=DataType.REGISTERS)],
        ),
    )


async def _stop(
    server: ModbusTcpServer | ModbusSerialServer | None, task: asyncio.Task[None] | None
) -> None:
    """Shut a pymodbus server down and end the task serving it."""
    if server is not None:
        await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class ModbusDevice:
    """A Modbus TCP server with ``units`` unit ids (1..units) on 127.0.0.1:``port``."""

    def __init__(self, *, units: int = 1, holding: list[int] | None = None) -> None:
        self.port = free_port()
        self.devices = [sim_device(u, holding) for u in range(1, units + 1)]
        self._server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._server = ModbusTcpServer(self.devices, address=("127.0.0.1", self.port))
        self._task = asyncio.create_task(self._server.serve_forever())
        await self._wait_answering()

    async def _wait_answering(self) -> None:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _r, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()
                return
            await asyncio.sleep(0.02)  # readiness poll of a server we just started
        raise RuntimeError("modbus server did not start")

    async def stop(self) -> None:
        await _stop(self._server, self._task)
        self._server, self._task = None, None

    async def _client(self) -> AsyncModbusTcpClient:
        client = AsyncModbusTcpClient("127.0.0.1", port=self.port, retries=0, reconnect_delay=0)
        assert await client.connect()
        return client

    async def poke(self, offset: int, values: list[int], *, unit: int = 1) -> None:
        """Write holding registers, as someone at the device would."""
        client = await self._client()
        try:
            rr = await client.write_registers(offset, values, device_id=unit)
            assert not rr.isError(), rr
        finally:
            client.close()

    async def peek(self, offset: int, count: int = 1, *, unit: int = 1) -> list[int]:
        """Read holding registers."""
        client = await self._client()
        try:
            rr = await client.read_holding_registers(offset, count=count, device_id=unit)
            assert not rr.isError(), rr
            return list(rr.registers)
        finally:
            client.close()

    async def coil(self, offset: int, *, unit: int = 1) -> bool:
        client = await self._client()
        try:
            rr = await client.read_coils(offset, count=1, device_id=unit)
            return bool(rr.bits[0])
        finally:
            client.close()


class ModbusDeviceProcess(ModbusDevice):
    """The same server in its own process, so a test (or bench) loop that blocks does not stall
    the device: ``python -m tests.support.fielddevices --port P --units N --holding 1,2``."""

    def __init__(self, *, units: int = 1, holding: list[int] | None = None) -> None:
        super().__init__(units=units, holding=holding)
        self.units = units
        self.holding = holding or []
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.fielddevices",
            "--port",
            str(self.port),
            "--units",
            str(self.units),
            "--holding",
            ",".join(str(v) for v in self.holding),
        )
        await self._wait_answering()

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        self._proc = None


async def _serve(port: int, units: int, holding: list[int]) -> None:
    server = ModbusTcpServer(
        [sim_device(u, holding) for u in range(1, units + 1)], address=("127.0.0.1", port)
    )
    await server.serve_forever()


class ModbusRtuDevice:
    """pymodbus's serial (RTU) server on one end of a pseudo-terminal pair."""

    def __init__(self, port: str, *, units: int = 1, holding: list[int] | None = None) -> None:
        self.port = port
        self.devices = [sim_device(u, holding) for u in range(1, units + 1)]
        self._server: ModbusSerialServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._server = ModbusSerialServer(self.devices, port=self.port, baudrate=19200)
        self._task = asyncio.create_task(self._server.serve_forever())
        await asyncio.sleep(0)  # the serial port opens in serve_forever

    async def stop(self) -> None:
        await _stop(self._server, self._task)
        self._server, self._task = None, None


class OpcUaDevice:
    """An asyncua server with variables ``ns=2;s=NAME`` (name -> initial value, variant type)."""

    def __init__(self, variables: dict[str, tuple[Any, ua.VariantType]]) -> None:
        self.port = free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}/edgebridge/"
        self.variables = variables
        self.nodes: dict[str, Any] = {}
        self.server: Server | None = None
        self._stopped: Server | None = None

    async def start(self) -> None:
        if self._stopped is not None:
            # a restart: same server, same address space (asyncua's init takes seconds)
            self.server, self._stopped = self._stopped, None
            await self.server.start()
            return
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        ns = await server.register_namespace("urn:edgebridge:test")
        assert ns == 2
        folder = await server.nodes.objects.add_object(ns, "Device")
        for name, (value, vtype) in self.variables.items():
            node = await folder.add_variable(
                ua.NodeId(ua.String(name), ua.Int16(ns)), name, value, varianttype=vtype
            )
            await node.set_writable()
            self.nodes[name] = node
        await server.start()
        self.server = server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self._stopped, self.server = self.server, None

    async def value(self, name: str) -> Any:
        return await self.nodes[name].read_value()

    async def set(self, name: str, value: Any) -> None:
        vtype = self.variables[name][1]
        await self.nodes[name].write_value(ua.DataValue(ua.Variant(value, vtype)))


def device_objects(
    name: str,
    protocol: str,
    protocol_config: dict[str, Any],
    properties: list[dict[str, Any]],
    *,
    namespace: str = "default",
    node: str = "edge-1",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A DeviceModel and a Device (v1beta1) for ``properties``.

    Each property: ``name``, ``type`` (INT...), ``access`` (ReadWrite default), ``visitor``
    (configData), optional ``cycle`` (ms, both cycles), ``desired``.
    """
    model = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": f"{name}-model", "namespace": namespace},
        "spec": {
            "protocol": protocol,
            "properties": [
                {"name": p["name"], "type": p["type"], "accessMode": p.get("access", "ReadWrite")}
                for p in properties
            ],
        },
    }
    device = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "deviceModelRef": {"name": f"{name}-model"},
            "nodeName": node,
            "protocol": {"protocolName": protocol, "configData": protocol_config},
            "properties": [
                {
                    "name": p["name"],
                    "collectCycle": p.get("cycle", 100),
                    "reportCycle": p.get("cycle", 100),
                    "reportToCloud": True,
                    "visitors": {"protocolName": protocol, "configData": p["visitor"]},
                    **({"desired": {"value": p["desired"]}} if "desired" in p else {}),
                }
                for p in properties
            ],
        },
    }
    return model, device


if __name__ == "__main__":
    _p = argparse.ArgumentParser(description="a pymodbus TCP server for tests and benches")
    _p.add_argument("--port", type=int, required=True)
    _p.add_argument("--units", type=int, default=1)
    _p.add_argument("--holding", default="")
    _a = _p.parse_args()
    _holding = [int(v) for v in _a.holding.split(",") if v]
    asyncio.run(_serve(_a.port, _a.units, _holding))
