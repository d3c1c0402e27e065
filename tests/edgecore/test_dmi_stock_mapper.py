"""DMI against what a real stock mapper did: the calls a KubeEdge mapper-framework v1.15.4
mapper made against edgecore (recorded by ``bench/dmi_mapper.py --record``, kept in
``dmi_mapper_v1_15_4.json``) are replayed in their order, and edgecore's calls back are held
to what that mapper accepted."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from edgecore.config import DmiSettings
from edgecore.dmi import api_pb2 as dmi
from edgecore.dmi import api_pb2_grpc as dmi_grpc
from edgecore.dmi.convert import device_to_dmi
from edgecore.dmi.module import DmiModule
from tests.edgecore.test_dmi import MapperService
from tests.edgecore.test_twin_support import NODE, TwinEdge, outbox_rows, running_edge
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(30)

_grpc: Any = dmi_grpc
RECORDING = json.loads((Path(__file__).parent / "dmi_mapper_v1_15_4.json").read_text())
TOPIC = "$hw/events/device/default/dmi-dev-0/twin/update/result"
#: the wrapper types mapper-framework v1.15's DecodeAnyValue understands
DECODABLE = {"StringValue", "Int32Value", "Int64Value", "FloatValue", "BoolValue"}


def recorded(method: str, index: int = 0) -> dict[str, Any]:
    """The ``index``-th recorded call of ``method``."""
    calls = [c for c in RECORDING["calls"] if c["method"] == method]
    return dict(calls[index])


def request(method: str, kind: type[Any], index: int = 0) -> Any:
    return json_format.ParseDict(recorded(method, index)["request"], kind())


def objects() -> tuple[dict[str, Any], dict[str, Any]]:
    model, device = copy.deepcopy(RECORDING["objects"])
    device["spec"]["nodeName"] = NODE  # the recording's edge was named otherwise
    return model, device


@asynccontextmanager
async def dmi_module(edge: TwinEdge, tmp_path: Path) -> AsyncIterator[Any]:
    """A DMI module on ``tmp_path/dmi.sock`` keeping its mappers in ``tmp_path``; yields a
    DeviceManagerService stub."""
    module = DmiModule(
        bus=edge.bus,
        meta=edge.meta,
        settings=DmiSettings(socket=tmp_path / "dmi.sock"),
        state_file=tmp_path / "dmi-mappers.json",
    )
    task = asyncio.create_task(module.run())
    try:
        async with asyncio.timeout(5):
            await module.ready.wait()
        async with grpc.aio.insecure_channel(f"unix://{tmp_path / 'dmi.sock'}") as channel:
            yield _grpc.DeviceManagerServiceStub(channel)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def mapper_server(path: Path) -> AsyncIterator[MapperService]:
    mapper = MapperService()
    server = grpc.aio.server()
    _grpc.add_DeviceMapperServiceServicer_to_server(mapper, server)
    server.add_insecure_port(f"unix://{path}")
    await server.start()
    try:
        yield mapper
    finally:
        await server.stop(0)


def register_request(mapper_socket: Path) -> Any:
    """The recorded MapperRegister, with this test's mapper socket as its address."""
    req = request("MapperRegister", dmi.MapperRegisterRequest)
    req.mapper.address = str(mapper_socket).encode()
    return req


def assert_parsable_by_stock_mapper(device: Any, models: set[str]) -> None:
    """What mapper-framework v1.15 dereferences without a nil check is there."""
    assert device.HasField("spec") and device.spec.HasField("protocol")
    assert device.spec.deviceModelReference in models
    for prop in device.spec.properties:
        assert prop.HasField("desired"), prop.name
        assert prop.HasField("visitors") and prop.visitors.HasField("configData"), prop.name
        for value in prop.visitors.configData.data.values():
            assert value.type_url.rsplit(".", 1)[-1] in DECODABLE
    for value in device.spec.protocol.configData.data.values():
        assert value.type_url.rsplit(".", 1)[-1] in DECODABLE


async def test_recorded_stock_mapper_session_replays(tmp_path: Path) -> None:
    """The stock mapper's MapperRegister gets the answer it accepted; its reports (one
    property each, no namespace, observedDesired alongside) land in the twin; a desired value
    reaches it as the UpdateDevice it accepted, and its echo report lands too."""
    model, device = objects()
    async with (
        running_edge(tmp_path, objects=False) as edge,
        mapper_server(tmp_path / "mapper.sock") as mapper,
        dmi_module(edge, tmp_path) as manager,
    ):
        await edge.apply(model, device)
        await edge.member("default/dmi-dev-0")
        answer = await manager.MapperRegister(register_request(tmp_path / "mapper.sock"), timeout=5)
        want = json_format.ParseDict(
            recorded("MapperRegister")["answer"], dmi.MapperRegisterResponse()
        )
        assert answer == want
        models = {m.name for m in answer.modelList}
        for got in answer.deviceList:
            assert_parsable_by_stock_mapper(got, models)

        for i, value in ((0, "1"), (1, "64")):
            report = request("ReportDeviceStatus", dmi.ReportDeviceStatusRequest, i)
            assert report.deviceNamespace == ""  # v1.15 mappers know no namespaces
            await manager.ReportDeviceStatus(report, timeout=5)
            prop = report.reportedDevice.twins[0].propertyName
            result = await edge.published(TOPIC)
            assert result["twin"][prop]["actual"]["value"] == value
        assert outbox_rows(edge.path)[-1][1] == "default/device/dmi-dev-0/twin/edge_updated"

        desired = copy.deepcopy(device)
        desired["spec"]["properties"][1]["desired"]["value"] = "1000"
        await edge.apply(desired)
        await wait_until(lambda: [c.method for c in mapper.calls] == ["UpdateDevice"])
        want_update = request("UpdateDevice", dmi.UpdateDeviceRequest)
        assert mapper.calls[0].request == want_update
        assert_parsable_by_stock_mapper(mapper.calls[0].request.device, models)

        echo = request("ReportDeviceStatus", dmi.ReportDeviceStatusRequest, 2)
        await manager.ReportDeviceStatus(echo, timeout=5)
        result = await edge.published(TOPIC)
        assert result["twin"]["target"]["actual"]["value"] == "1000"


async def test_unchanged_device_is_not_handed_to_the_mapper_again(tmp_path: Path) -> None:
    """A Device stored again with the same content is no UpdateDevice (a stock mapper
    restarts the device on each); a real change is."""
    model, device = objects()
    async with (
        running_edge(tmp_path, objects=False) as edge,
        mapper_server(tmp_path / "mapper.sock") as mapper,
        dmi_module(edge, tmp_path) as manager,
    ):
        await edge.apply(model, device)
        await edge.member("default/dmi-dev-0")
        await manager.MapperRegister(register_request(tmp_path / "mapper.sock"), timeout=5)
        relabelled = copy.deepcopy(device)
        relabelled["metadata"]["labels"] = {"room": "3"}
        await edge.apply(relabelled)
        changed = copy.deepcopy(relabelled)
        changed["spec"]["properties"][1]["desired"]["value"] = "7"
        await edge.apply(changed)
        await wait_until(lambda: len(mapper.calls) >= 1)  # events are handled in order
        assert [c.method for c in mapper.calls] == ["UpdateDevice"]
        assert mapper.calls[0].request.device.spec.properties[1].desired.value == "7"


async def test_edge_restart_keeps_calling_the_registered_mapper(tmp_path: Path) -> None:
    """A stock mapper registers once; after edgecore restarts, a desired value still reaches
    it (the mapper is dialled again from the edge's data dir), without a new MapperRegister."""
    model, device = objects()
    async with (
        running_edge(tmp_path, objects=False) as edge,
        mapper_server(tmp_path / "mapper.sock") as mapper,
    ):
        await edge.apply(model, device)
        await edge.member("default/dmi-dev-0")
        async with dmi_module(edge, tmp_path) as manager:
            await manager.MapperRegister(register_request(tmp_path / "mapper.sock"), timeout=5)
        saved = json.loads((tmp_path / "dmi-mappers.json").read_text())
        assert [m["protocol"] for m in saved["mappers"]] == ["virtual"]
        async with dmi_module(edge, tmp_path):
            changed = copy.deepcopy(device)
            changed["spec"]["properties"][1]["desired"]["value"] = "42"
            await edge.apply(changed)
            await wait_until(lambda: any(c.method == "UpdateDevice" for c in mapper.calls))
        update = next(c.request for c in mapper.calls if c.method == "UpdateDevice")
        assert update.device.spec.properties[1].desired.value == "42"


async def test_unreadable_mapper_file_is_ignored(tmp_path: Path) -> None:
    """A damaged mappers file is one warning; DMI is served and mappers register as usual."""
    (tmp_path / "dmi-mappers.json").write_text("{not json")
    async with running_edge(tmp_path) as edge, dmi_module(edge, tmp_path) as manager:
        answer = await manager.MapperRegister(register_request(tmp_path / "m.sock"), timeout=5)
        assert list(answer.deviceList) == []
    saved = json.loads((tmp_path / "dmi-mappers.json").read_text())
    assert saved["mappers"][0]["name"] == "virtual-mapper"


async def test_device_before_its_model_waits_for_it(tmp_path: Path) -> None:
    """A Device reaching the edge before its DeviceModel is handed to the mapper once the
    model is there, model first (a stock mapper refuses a Device whose model it lacks)."""
    model, device = objects()
    async with (
        running_edge(tmp_path, objects=False) as edge,
        mapper_server(tmp_path / "mapper.sock") as mapper,
        dmi_module(edge, tmp_path) as manager,
    ):
        answer = await manager.MapperRegister(register_request(tmp_path / "mapper.sock"), timeout=5)
        assert list(answer.deviceList) == []
        await edge.apply(device)
        await edge.member("default/dmi-dev-0")
        await edge.apply(model)
        await wait_until(lambda: len(mapper.calls) >= 2)
        assert [c.method for c in mapper.calls] == ["CreateDeviceModel", "RegisterDevice"]
        assert mapper.calls[0].request.model.name == "dmi-counter"
        assert_parsable_by_stock_mapper(mapper.calls[1].request.device, {"dmi-counter"})


async def test_bare_device_name_is_resolved_among_the_nodes_devices(tmp_path: Path) -> None:
    """A v1.15 mapper reports by name only: a Device outside ``default`` is found by its name
    on this node; a name found nowhere is NOT_FOUND."""
    model, device = objects()
    for obj in (model, device):
        obj["metadata"]["namespace"] = "plant"
    async with (
        running_edge(tmp_path, objects=False) as edge,
        dmi_module(edge, tmp_path) as manager,
    ):
        await edge.apply(model, device)
        await edge.member("plant/dmi-dev-0")
        report = request("ReportDeviceStatus", dmi.ReportDeviceStatusRequest, 1)
        await manager.ReportDeviceStatus(report, timeout=5)
        result = await edge.published("$hw/events/device/plant/dmi-dev-0/twin/update/result")
        assert result["twin"]["level"]["actual"]["value"] == "64"
        report.deviceName = "dmi-dev-9"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await manager.ReportDeviceStatus(report, timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("written", "handed"),
    [(1000, 1_000_000_000), (500_000_000, 500_000_000), (0, 1_000_000_000), (1, 50_000_000)],
)
def test_cycles_go_down_as_go_durations(written: int, handed: int) -> None:
    """A mapper-framework mapper reads cycles as nanoseconds: milliseconds (below a million)
    are converted, nanoseconds kept, none is one second, below 50 ms is 50 ms."""
    _, device = objects()
    device["spec"]["properties"][0]["collectCycle"] = written
    device["spec"]["properties"][0]["reportCycle"] = written
    prop = device_to_dmi(device).spec.properties[0]
    assert (prop.collectCycle, prop.reportCycle) == (handed, handed)
