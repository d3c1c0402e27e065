"""DMI: a Python gRPC client plays a stock mapper (mapper-framework) against edgecore's
``DeviceManagerService`` on a unix socket, and serves its own ``DeviceMapperService``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from edgecore.config import DmiSettings
from edgecore.dmi import api_pb2 as dmi
from edgecore.dmi import api_pb2_grpc as dmi_grpc
from edgecore.dmi.convert import pack_value, unpack_value
from edgecore.dmi.module import DmiModule
from hive.ratelimit import TokenBucket
from tests.edgecore.test_twin_support import TwinEdge, device, model, outbox_rows, running_edge
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(30)

NS_DEV = "$hw/events/device/default/thermostat-1"
_grpc: Any = dmi_grpc


def modbus(obj: dict[str, Any], protocol: str = "modbus") -> dict[str, Any]:
    """``obj`` (a Device) with a protocol and a visitor whose configData has every kind."""
    obj["spec"]["protocol"] = {
        "protocolName": protocol,
        "configData": {"port": "/dev/ttyS0", "slaveID": 1, "big": 2**40, "ratio": 0.5},
    }
    obj["spec"]["properties"][0]["visitors"] = {
        "protocolName": protocol,
        "configData": {"register": "HoldingRegister", "offset": 2, "swap": True},
    }
    return obj


@dataclass
class Call:
    method: str
    request: Any


class MapperService(dmi_grpc.DeviceMapperServiceServicer):
    """The mapper's side: records every call edgecore makes."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def _record(self, method: str, request: Any) -> None:
        self.calls.append(Call(method, request))

    async def RegisterDevice(self, request: Any, context: Any) -> Any:
        self._record("RegisterDevice", request)
        return dmi.RegisterDeviceResponse(deviceName=request.device.name)

    async def UpdateDevice(self, request: Any, context: Any) -> Any:
        self._record("UpdateDevice", request)
        return dmi.UpdateDeviceResponse()

    async def RemoveDevice(self, request: Any, context: Any) -> Any:
        self._record("RemoveDevice", request)
        return dmi.RemoveDeviceResponse()

    async def CreateDeviceModel(self, request: Any, context: Any) -> Any:
        self._record("CreateDeviceModel", request)
        return dmi.CreateDeviceModelResponse(deviceModelName=request.model.name)

    async def UpdateDeviceModel(self, request: Any, context: Any) -> Any:
        self._record("UpdateDeviceModel", request)
        return dmi.UpdateDeviceModelResponse()

    async def RemoveDeviceModel(self, request: Any, context: Any) -> Any:
        self._record("RemoveDeviceModel", request)
        return dmi.RemoveDeviceModelResponse()


@dataclass
class Rig:
    edge: TwinEdge
    dmi: DmiModule
    manager: Any
    mapper: MapperService
    mapper_socket: Path


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """The twin with thermostat-1 (protocol modbus), DMI on a socket, a mapper server."""
    async with running_edge(tmp_path, objects=False) as edge:
        await edge.apply(model(), modbus(device()))
        await edge.member()
        module = DmiModule(
            bus=edge.bus,
            meta=edge.meta,
            settings=DmiSettings(socket=tmp_path / "dmi.sock", rate=5, burst=1),
        )
        task = asyncio.create_task(module.run())
        mapper = MapperService()
        server = grpc.aio.server()
        _grpc.add_DeviceMapperServiceServicer_to_server(mapper, server)
        mapper_socket = tmp_path / "mapper.sock"
        server.add_insecure_port(f"unix://{mapper_socket}")
        await server.start()
        try:
            async with asyncio.timeout(5):
                await module.ready.wait()
            async with grpc.aio.insecure_channel(f"unix://{tmp_path / 'dmi.sock'}") as channel:
                yield Rig(
                    edge, module, _grpc.DeviceManagerServiceStub(channel), mapper, mapper_socket
                )
        finally:
            await server.stop(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _register(rig: Rig, protocol: str = "modbus") -> Any:
    return await rig.manager.MapperRegister(
        dmi.MapperRegisterRequest(
            withData=True,
            mapper=dmi.MapperInfo(
                name=f"{protocol}-mapper",
                version="v1.15.0",
                api_version="v1beta1",
                protocol=protocol,
                address=str(rig.mapper_socket).encode(),
                state="ok",
            ),
        ),
        timeout=5,
    )


def _report(value: str, name: str = "thermostat-1") -> Any:
    return dmi.ReportDeviceStatusRequest(
        deviceName=name,
        deviceNamespace="default",
        reportedDevice=dmi.DeviceStatus(
            twins=[
                dmi.Twin(
                    propertyName="temperature",
                    reported=dmi.TwinProperty(value=value, metadata={"type": "float"}),
                )
            ]
        ),
    )


async def test_registered_mapper_gets_its_devices_with_packed_config(rig: Rig) -> None:
    """MapperRegister with data returns the protocol's devices and models; configData values
    are Any-wrapped String/Int32/Int64/Float/Bool values."""
    answer = await _register(rig)
    assert [d.name for d in answer.deviceList] == ["thermostat-1"]
    assert [m.name for m in answer.modelList] == ["thermostat-model"]
    got = answer.deviceList[0]
    assert got.namespace == "default"
    assert got.spec.deviceModelReference == "thermostat-model"
    config = {k: unpack_value(v) for k, v in got.spec.protocol.configData.data.items()}
    assert config == {"port": "/dev/ttyS0", "slaveID": 1, "big": 2**40, "ratio": 0.5}
    kinds = {k: v.type_url.rsplit(".", 1)[-1] for k, v in got.spec.protocol.configData.data.items()}
    assert kinds == {
        "port": "StringValue",
        "slaveID": "Int32Value",
        "big": "Int64Value",
        "ratio": "FloatValue",
    }
    visitor = got.spec.properties[0].visitors.configData.data
    assert unpack_value(visitor["swap"]) is True
    assert pack_value(True).type_url.endswith("google.protobuf.BoolValue")
    other = await _register(rig, protocol="opcua")
    assert list(other.deviceList) == []


async def test_reports_land_in_the_twin_as_mqtt_reports_do(rig: Rig) -> None:
    """ReportDeviceStatus and ReportDeviceStates are applied by the twin (result, upstream
    row); a device not on this node is NOT_FOUND and changes nothing."""
    await _register(rig)
    await rig.manager.ReportDeviceStatus(_report("21.5"), timeout=5)
    result = await rig.edge.published(f"{NS_DEV}/twin/update/result")
    assert result["twin"]["temperature"]["actual"]["value"] == "21.5"
    rows = outbox_rows(rig.edge.path)
    assert rows[-1][1] == "default/device/thermostat-1/twin/edge_updated"
    assert rows[-1][2]["twin"]["temperature"]["actual"]["value"] == "21.5"
    await rig.manager.ReportDeviceStates(
        dmi.ReportDeviceStatesRequest(
            deviceName="thermostat-1", deviceNamespace="default", state="online"
        ),
        timeout=5,
    )
    state = await rig.edge.published(f"{NS_DEV}/state/update/result")
    assert "code" not in state  # accepted
    assert any(
        r[1] == "default/device/thermostat-1/state/update" for r in outbox_rows(rig.edge.path)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.manager.ReportDeviceStatus(_report("1", name="elsewhere"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "not bound to this node" in (info.value.details() or "")


async def test_cache_changes_drive_the_registered_mapper(rig: Rig) -> None:
    """A Device of the mapper's protocol added, changed, removed on the edge becomes
    RegisterDevice, UpdateDevice, RemoveDevice on the mapper (its model is not sent twice)."""
    await _register(rig)
    second = modbus(device("thermostat-2"))
    await rig.edge.apply(second)
    await wait_until(lambda: any(c.method == "RegisterDevice" for c in rig.mapper.calls))
    second["spec"]["properties"].append({"name": "setpoint", "desired": {"value": "20"}})
    await rig.edge.apply(second)
    await wait_until(lambda: any(c.method == "UpdateDevice" for c in rig.mapper.calls))
    await rig.edge.delete(second)
    await wait_until(lambda: any(c.method == "RemoveDevice" for c in rig.mapper.calls))
    methods = [c.method for c in rig.mapper.calls]
    assert methods == ["RegisterDevice", "UpdateDevice", "RemoveDevice"]
    update = rig.mapper.calls[1].request.device
    assert [p.desired.value for p in update.spec.properties if p.name == "setpoint"] == ["20"]
    assert rig.mapper.calls[2].request.deviceName == "thermostat-2"


async def test_each_mapper_is_paced_by_its_own_budget(rig: Rig) -> None:
    """A mapper over its rate (5/s, burst 1) is paced; another mapper's report is not."""
    await _register(rig)
    await rig.edge.apply(modbus(device("probe-1"), protocol="opcua"))
    await wait_until(lambda: ("default", "probe-1") in rig.dmi._devices)
    began = time.monotonic()
    for v in range(3):
        await rig.manager.ReportDeviceStatus(_report(str(v)), timeout=5)
    assert time.monotonic() - began >= 0.3  # 2 reports over the burst, 0.2 s each
    began = time.monotonic()
    await rig.manager.ReportDeviceStatus(_report("9", name="probe-1"), timeout=5)
    assert time.monotonic() - began < 0.15


async def test_report_the_pace_would_hold_past_its_deadline_is_refused(rig: Rig) -> None:
    """Reports that would wait past the caller's deadline (a stock mapper gives one second)
    are RESOURCE_EXHAUSTED at once and not applied; the others are paced and applied."""
    await _register(rig)
    before = rig.dmi.reports
    calls = [rig.manager.ReportDeviceStatus(_report(str(v)), timeout=0.7) for v in range(6)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert {r.code() for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    # waits of 0, 0.2, 0.4 s pass; 0.8 and 1.0 s would not; 0.6 s depends on the transit
    assert 2 <= len(refused) <= 3
    assert rig.dmi.reports - before == 6 - len(refused)


async def test_grpc_starts_at_the_first_connection_and_then_owns_the_socket(
    rig: Rig, tmp_path: Path
) -> None:
    """No gRPC server before a mapper connects; the first connection is relayed to the one
    it starts, and later connections reach that server directly."""
    assert rig.dmi._server is None
    await _register(rig)
    assert rig.dmi._server is not None
    async with grpc.aio.insecure_channel(f"unix://{tmp_path / 'dmi.sock'}") as channel:
        await _grpc.DeviceManagerServiceStub(channel).ReportDeviceStatus(_report("7"), timeout=5)
    await rig.manager.ReportDeviceStatus(_report("8"), timeout=5)
    assert rig.dmi.reports == 2


def test_token_bucket_wait_spends_nothing() -> None:
    """``wait`` says what ``reserve`` would, and leaves the budget as it was."""
    bucket = TokenBucket(rate=5, burst=1, now=0.0)
    assert bucket.wait(1.0, 0.0) == 0.0
    assert bucket.reserve(1.0, 0.0) == 0.0
    assert bucket.wait(1.0, 0.0) == pytest.approx(0.2)
    assert bucket.wait(1.0, 0.0) == pytest.approx(0.2)
    assert bucket.reserve(1.0, 0.0) == pytest.approx(0.2)
