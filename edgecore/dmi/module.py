"""The ``dmi`` module: KubeEdge's Device Management Interface for stock mappers.

Mappers built on KubeEdge's mapper-framework (>= 1.15) do not speak MQTT to the twin: they
call edgecore's ``DeviceManagerService`` over gRPC on a unix socket (``--dmi-socket``,
KubeEdge's ``/etc/kubeedge/dmi.sock`` by default) and serve ``DeviceMapperService`` on a socket
of their own, whose path they give in ``MapperRegister``.

- ``MapperRegister``: the mapper (one per protocol) is recorded; with ``withData`` it gets the
  Devices of its protocol bound to this node and their DeviceModels.
- From then on the edge's cache drives it: a Device of its protocol added, changed or gone is
  ``RegisterDevice`` / ``UpdateDevice`` / ``RemoveDevice`` (a model the mapper does not have
  yet goes first with ``CreateDeviceModel``); a model change is ``UpdateDeviceModel`` /
  ``RemoveDeviceModel``.
- ``ReportDeviceStatus`` / ``ReportDeviceStates`` become the MQTT requests a mapper would
  publish (:mod:`.convert`) and enter the twin as eventbus hands those over: the twin applies,
  answers and sends them upstream by exactly the same rules.

Rate: KubeEdge bounds every mapper together at 1 request/s. Here each mapper (by protocol)
has its own token bucket (``rate``/``burst``): a chatty mapper is paced (its calls take
longer), the others are not held up by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from edgecore.config import DmiSettings
from edgecore.dmi import api_pb2 as dmi
from edgecore.dmi import api_pb2_grpc as dmi_grpc
from edgecore.dmi.convert import (
    device_to_dmi,
    model_to_dmi,
    protocol_of,
    states_request,
    status_request,
)
from edgecore.metamanager.store import MetaStore, StoreEvent, Subscription
from edgecore.modules import DMI, DMI_GROUP, TWIN, TWIN_GROUP
from hive.bus import Bus
from hive.ratelimit import TokenBucket
from wire.messages import Message

log = logging.getLogger(__name__)

#: the generated stubs are untyped
_grpc: Any = dmi_grpc


@dataclass
class Mapper:
    """One registered mapper."""

    name: str
    protocol: str
    address: str
    bucket: TokenBucket
    #: the mapper's DeviceMapperService (generated stubs are untyped)
    stub: Any = None
    channel: grpc.aio.Channel | None = None
    #: model keys (``ns/name``) this mapper has been given
    models: set[str] = field(default_factory=set)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


class DmiModule:
    """Serves ``DeviceManagerService``; drives registered mappers from the edge's cache."""

    name = DMI
    group = DMI_GROUP
    enabled = True

    def __init__(
        self,
        *,
        bus: Bus,
        meta: MetaStore,
        settings: DmiSettings,
        clock: Any = time.monotonic,
    ) -> None:
        self._bus = bus
        self._meta = meta
        self._settings = settings
        self._clock = clock
        #: by protocol: KubeEdge runs one mapper per protocol
        self.mappers: dict[str, Mapper] = {}
        self._devices: dict[tuple[str, str], dict[str, Any]] = {}
        self._models: dict[tuple[str, str], dict[str, Any]] = {}
        #: reports of devices with no registered mapper share one budget
        self._unclaimed = TokenBucket(rate=settings.rate, burst=settings.burst, now=clock())
        self.reports = 0
        self.ready = asyncio.Event()

    async def run(self) -> None:
        path = self._settings.socket
        if path is None:
            return
        subs = {t: self._meta.subscribe(t) for t in ("device", "devicemodel")}
        for obj in await self._meta.list("device"):
            self._devices[_key(obj)] = obj
        for obj in await self._meta.list("devicemodel"):
            self._models[_key(obj)] = obj
        server = grpc.aio.server()
        _grpc.add_DeviceManagerServiceServicer_to_server(_Manager(self), server)
        if _served(path):
            log.warning("DMI not served: %s is served by another process", path)
            for sub in subs.values():
                sub.close()
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)  # a previous edgecore's socket, nobody serves it
            server.add_insecure_port(f"unix://{path}")
        except (OSError, RuntimeError) as exc:
            log.warning(
                "DMI not served: cannot listen on %s (%s); stock mappers cannot register", path, exc
            )
            for sub in subs.values():
                sub.close()
            return
        await server.start()
        log.info("DMI served on %s", path)
        self.ready.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._follow("device", subs))
                tasks.create_task(self._follow("devicemodel", subs))
        finally:
            for sub in subs.values():
                sub.close()
            await server.stop(grace=0.5)
            for mapper in self.mappers.values():
                if mapper.channel is not None:
                    await mapper.channel.close()
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    # -- mappers calling us --------------------------------------------------------------------

    async def register(self, req: dmi.MapperRegisterRequest) -> dmi.MapperRegisterResponse:
        info = req.mapper
        address = bytes(info.address).decode(errors="replace")
        old = self.mappers.get(info.protocol)
        if old is not None and old.channel is not None:
            await old.channel.close()
        mapper = Mapper(
            name=info.name,
            protocol=info.protocol,
            address=address,
            bucket=TokenBucket(
                rate=self._settings.rate, burst=self._settings.burst, now=self._clock()
            ),
        )
        if address:
            target = address if "://" in address else f"unix://{address}"
            mapper.channel = grpc.aio.insecure_channel(target)
            mapper.stub = _grpc.DeviceMapperServiceStub(mapper.channel)
        self.mappers[info.protocol] = mapper
        log.info(
            "DMI mapper %s (protocol %s, %s) registered at %s",
            info.name,
            info.protocol,
            info.version or "?",
            address or "no address",
        )
        if not req.withData:
            return dmi.MapperRegisterResponse()
        devices = [d for d in self._devices.values() if protocol_of(d) == info.protocol]
        models = self._models_of(devices)
        mapper.models.update(f"{ns}/{name}" for ns, name in (_key(m) for m in models))
        return dmi.MapperRegisterResponse(
            modelList=[model_to_dmi(m) for m in models],
            deviceList=[device_to_dmi(d) for d in devices],
        )

    async def report(self, name: str, namespace: str, topic_payload: tuple[str, str]) -> bool:
        """Hand a mapper's report to the twin, paced by its mapper's budget; ``False`` when
        the device is not on this node."""
        device = self._devices.get((namespace or "default", name))
        if device is None:
            return False
        mapper = self.mappers.get(protocol_of(device))
        bucket = mapper.bucket if mapper is not None else self._unclaimed
        wait = bucket.reserve(1.0, self._clock())
        if wait > 0:
            await asyncio.sleep(wait)
        topic, payload = topic_payload
        await self._bus.send(
            TWIN,
            Message.new(
                source=DMI, group=TWIN_GROUP, operation="message", resource=topic, content=payload
            ),
        )
        self.reports += 1
        return True

    # -- the cache driving mappers -------------------------------------------------------------

    def _models_of(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for d in devices:
            ns, _ = _key(d)
            ref = str(((d.get("spec") or {}).get("deviceModelRef") or {}).get("name") or "")
            model = self._models.get((ns, ref))
            if model is not None:
                seen[(ns, ref)] = model
        return list(seen.values())

    async def _follow(self, type_: str, subs: dict[str, Subscription]) -> None:
        """Drive mappers from committed changes of ``type_``; after falling behind, list
        again (a mapper may then get an ``UpdateDevice`` it did not need: harmless)."""
        while True:
            sub = subs[type_]
            async for event in sub:
                await self._apply(type_, event)
            if not sub.overflowed:
                return  # the cache closed
            log.warning("DMI fell behind on %s changes; listing them again", type_)
            subs[type_] = self._meta.subscribe(type_)
            for obj in await self._meta.list(type_):
                await self._apply(type_, StoreEvent(type="MODIFIED", key="", obj=obj))

    async def _apply(self, type_: str, event: StoreEvent) -> None:
        try:
            if type_ == "device":
                await self._device_event(event)
            else:
                await self._model_event(event)
        except grpc.aio.AioRpcError as exc:
            log.warning("DMI call for %s failed: %s", event.key, exc.details() or exc.code())

    async def _device_event(self, event: StoreEvent) -> None:
        key = _key(event.obj)
        before = self._devices.get(key)
        if event.type == "DELETED":
            self._devices.pop(key, None)
        else:
            self._devices[key] = event.obj
        old = self.mappers.get(protocol_of(before)) if before is not None else None
        new = self.mappers.get(protocol_of(event.obj)) if event.type != "DELETED" else None
        timeout = self._settings.call_timeout
        ns, name = key
        if old is not None and old.stub is not None and old is not new:
            await old.stub.RemoveDevice(
                dmi.RemoveDeviceRequest(deviceName=name, deviceNamespace=ns), timeout=timeout
            )
        if new is None or new.stub is None:
            return
        for model in self._models_of([event.obj]):
            mkey = "/".join(_key(model))
            if mkey not in new.models:
                await new.stub.CreateDeviceModel(
                    dmi.CreateDeviceModelRequest(model=model_to_dmi(model)), timeout=timeout
                )
                new.models.add(mkey)
        device = device_to_dmi(event.obj)
        if before is None or old is not new:
            await new.stub.RegisterDevice(dmi.RegisterDeviceRequest(device=device), timeout=timeout)
        else:
            await new.stub.UpdateDevice(dmi.UpdateDeviceRequest(device=device), timeout=timeout)

    async def _model_event(self, event: StoreEvent) -> None:
        key = _key(event.obj)
        mkey = "/".join(key)
        if event.type == "DELETED":
            self._models.pop(key, None)
        else:
            self._models[key] = event.obj
        timeout = self._settings.call_timeout
        for mapper in list(self.mappers.values()):
            if mkey not in mapper.models or mapper.stub is None:
                continue
            if event.type == "DELETED":
                mapper.models.discard(mkey)
                await mapper.stub.RemoveDeviceModel(
                    dmi.RemoveDeviceModelRequest(modelName=key[1], modelNamespace=key[0]),
                    timeout=timeout,
                )
            else:
                await mapper.stub.UpdateDeviceModel(
                    dmi.UpdateDeviceModelRequest(model=model_to_dmi(event.obj)), timeout=timeout
                )


class _Manager(dmi_grpc.DeviceManagerServiceServicer):
    """gRPC face of :class:`DmiModule`."""

    def __init__(self, module: DmiModule) -> None:
        self._module = module

    async def MapperRegister(
        self, request: dmi.MapperRegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dmi.MapperRegisterResponse:
        if not request.mapper.protocol:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "mapper.protocol is empty")
        return await self._module.register(request)

    async def ReportDeviceStatus(
        self, request: dmi.ReportDeviceStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dmi.ReportDeviceStatusResponse:
        found = await self._module.report(
            request.deviceName,
            request.deviceNamespace,
            status_request(request, int(time.time() * 1000)),
        )
        if not found:
            await _not_found(context, request.deviceName, request.deviceNamespace)
        return dmi.ReportDeviceStatusResponse()

    async def ReportDeviceStates(
        self, request: dmi.ReportDeviceStatesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dmi.ReportDeviceStatesResponse:
        found = await self._module.report(
            request.deviceName,
            request.deviceNamespace,
            states_request(request, int(time.time() * 1000)),
        )
        if not found:
            await _not_found(context, request.deviceName, request.deviceNamespace)
        return dmi.ReportDeviceStatesResponse()


def _served(path: Path) -> bool:
    """Whether a live process answers on the unix socket ``path``."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


async def _not_found(context: grpc.aio.ServicerContext[Any, Any], name: str, ns: str) -> None:
    await context.abort(
        grpc.StatusCode.NOT_FOUND, f"device {ns or 'default'}/{name} is not bound to this node"
    )
