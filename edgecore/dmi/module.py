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

Restarts: a stock mapper registers once, when it starts. KubeEdge's edgecore forgets it when
it restarts itself (desired values stop reaching the mapper until the mapper is restarted
too); here registered mappers are kept in ``state_file`` and dialled again on start
(:mod:`.mappers`).

gRPC and the protobuf messages are loaded when first needed (:mod:`.door`): when a mapper
first connects, or at start when mappers registered before are dialled again. Until then the
socket is held by a plain listener, and an edge that serves DMI to no mapper does not pay
gRPC's and protobuf's ~16 MiB.

Rate: KubeEdge bounds every mapper together at 1 request/s. Here each mapper (by protocol)
has its own token bucket (``rate``/``burst``): a chatty mapper is paced (its calls take
longer), the others are not held up by it; a report the pace would hold past the caller's
deadline is refused at once (``RESOURCE_EXHAUSTED``) rather than applied after the caller
gave up on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edgecore.config import DmiSettings
from edgecore.dmi.door import Door
from edgecore.dmi.mappers import Mapper, MapperRecord, load_records, protocol_of, save_records
from edgecore.metastore import MetaStore, StoreEvent, Subscription
from edgecore.modules import DMI, DMI_GROUP, TWIN, TWIN_GROUP
from hive.bus import Bus
from hive.ratelimit import TokenBucket
from wire.messages import Message

if TYPE_CHECKING:
    from edgecore.dmi import api_pb2 as dmi

log = logging.getLogger(__name__)


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
        state_file: Path | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self._bus = bus
        self._state_file = state_file
        self._meta = meta
        self._settings = settings
        self._clock = clock
        #: by protocol: KubeEdge runs one mapper per protocol
        self.mappers: dict[str, Mapper] = {}
        self._devices: dict[tuple[str, str], dict[str, Any]] = {}
        self._models: dict[tuple[str, str], dict[str, Any]] = {}
        #: devices their mapper has: the DMI form last handed to it (None: not known, the
        #: mapper loaded it itself or got it before edgecore restarted)
        self._sent: dict[tuple[str, str], dmi.Device | None] = {}
        #: reports of devices with no registered mapper share one budget
        self._unclaimed = TokenBucket(rate=settings.rate, burst=settings.burst, now=clock())
        self.reports = 0
        self.ready = asyncio.Event()
        #: the gRPC server (``grpc.aio.Server``), once loaded
        self._server: Any = None

    async def run(self) -> None:
        path = self._settings.socket
        if path is None:
            return
        if _served(path):
            log.warning("DMI not served: %s is served by another process", path)
            return
        subs = {t: self._meta.subscribe(t) for t in ("device", "devicemodel")}
        for obj in await self._meta.list("device"):
            self._devices[_key(obj)] = obj
        for obj in await self._meta.list("devicemodel"):
            self._models[_key(obj)] = obj
        records = await load_records(self._state_file) if self._state_file is not None else []
        door = Door(path, lambda: self._serve(path))
        try:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.unlink(missing_ok=True)  # a previous edgecore's socket, nobody serves it
                if records:
                    await self._serve(path)  # mappers to dial again: gRPC now
                else:
                    await door.listen()
            except (OSError, RuntimeError) as exc:
                log.warning(
                    "DMI not served: cannot listen on %s (%s); stock mappers cannot register",
                    path,
                    exc,
                )
                return
            log.info("DMI served on %s", path)
            await self._restore(records)
            self.ready.set()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._follow("device", subs))
                tasks.create_task(self._follow("devicemodel", subs))
        finally:
            for sub in subs.values():
                sub.close()
            await door.close()
            if self._server is not None:
                await self._server.stop(grace=0.5)
            for mapper in self.mappers.values():
                if mapper.channel is not None:
                    await mapper.channel.close()
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    async def _serve(self, path: Path) -> None:
        """Load gRPC and serve ``DeviceManagerService`` at ``path``."""
        from edgecore.dmi import rpc

        self._server = await rpc.serve(self, path)

    # -- mappers calling us --------------------------------------------------------------------

    async def register(self, req: dmi.MapperRegisterRequest) -> dmi.MapperRegisterResponse:
        from edgecore.dmi import api_pb2 as dmi
        from edgecore.dmi.convert import device_to_dmi, model_to_dmi

        info = req.mapper
        record = MapperRecord(
            name=info.name,
            protocol=info.protocol,
            address=bytes(info.address).decode(errors="replace"),
            version=info.version,
        )
        mapper = await self._connect(record)
        log.info(
            "DMI mapper %s (protocol %s, %s) registered at %s",
            info.name,
            info.protocol,
            info.version or "?",
            record.address or "no address",
        )
        await self._save()
        if not req.withData:
            self._assume_handed(info.protocol)  # it loaded its devices itself
            return dmi.MapperRegisterResponse()
        # as KubeEdge: a Device whose model is not on the edge yet goes when the model comes
        devices = [
            d
            for d in self._devices.values()
            if protocol_of(d) == info.protocol and self._models_of([d])
        ]
        models = self._models_of(devices)
        mapper.models.update(f"{ns}/{name}" for ns, name in (_key(m) for m in models))
        sent = {_key(d): device_to_dmi(d) for d in devices}
        self._sent.update(sent)
        return dmi.MapperRegisterResponse(
            modelList=[model_to_dmi(m) for m in models], deviceList=list(sent.values())
        )

    async def _connect(self, record: MapperRecord) -> Mapper:
        """Record ``record`` as its protocol's mapper, with a channel to its address."""
        old = self.mappers.get(record.protocol)
        if old is not None and old.channel is not None:
            await old.channel.close()
        mapper = Mapper(
            name=record.name,
            protocol=record.protocol,
            address=record.address,
            version=record.version,
            bucket=TokenBucket(
                rate=self._settings.rate, burst=self._settings.burst, now=self._clock()
            ),
        )
        if record.address:
            from edgecore.dmi import rpc  # loaded already: a mapper called, or one is restored

            mapper.channel, mapper.stub = rpc.connect(record.address)
        self.mappers[record.protocol] = mapper
        return mapper

    async def _restore(self, records: list[MapperRecord]) -> None:
        """Dial again the mappers registered before this edgecore started (a stock mapper
        does not register again)."""
        for record in records:
            await self._connect(record)
            self._assume_handed(record.protocol)
            log.info(
                "DMI mapper %s (protocol %s) from the last run: calling it at %s",
                record.name,
                record.protocol,
                record.address or "no address",
            )

    def _assume_handed(self, protocol: str) -> None:
        """The mapper of ``protocol`` has its Devices, in a form we do not know: the next
        change of one is an ``UpdateDevice`` (a stock mapper ignores a ``RegisterDevice`` of a
        device it has)."""
        for key, obj in self._devices.items():
            if protocol_of(obj) == protocol:
                self._sent.setdefault(key, None)

    async def _save(self) -> None:
        if self._state_file is not None:
            await save_records(self._state_file, [m.record() for m in self.mappers.values()])

    def namespace_of(self, name: str, namespace: str) -> str | None:
        """The namespace of the Device ``name`` on this node, or None. v1.15 mappers know no
        namespaces: a bare name is ``default``'s, else the one device of that name here."""
        if namespace:
            return namespace if (namespace, name) in self._devices else None
        if ("default", name) in self._devices:
            return "default"
        found = [ns for ns, n in self._devices if n == name]
        return found[0] if len(found) == 1 else None

    async def report(
        self, name: str, namespace: str, topic_payload: tuple[str, str], within: float | None
    ) -> Literal["ok", "not_found", "busy"]:
        """Hand a mapper's report to the twin, paced by its mapper's budget: ``not_found``
        when the device is not on this node, ``busy`` (nothing spent, nothing applied) when
        the pace would keep it past the caller's deadline (``within`` seconds; a stock mapper
        gives each report one second)."""
        device = self._devices.get((namespace or "default", name))
        if device is None:
            return "not_found"
        mapper = self.mappers.get(protocol_of(device))
        bucket = mapper.bucket if mapper is not None else self._unclaimed
        now = self._clock()
        if within is not None and bucket.wait(1.0, now) >= within:
            return "busy"
        wait = bucket.reserve(1.0, now)
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
        return "ok"

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
        except Exception as exc:
            from edgecore.dmi import rpc

            failure = rpc.call_failed(exc)
            if failure is None:
                raise
            log.warning("DMI call for %s failed: %s", event.key, failure)

    async def _device_event(self, event: StoreEvent) -> None:
        key = _key(event.obj)
        before = self._devices.get(key)
        if event.type == "DELETED":
            self._devices.pop(key, None)
        else:
            self._devices[key] = event.obj
        old = self.mappers.get(protocol_of(before)) if before is not None else None
        new = self.mappers.get(protocol_of(event.obj)) if event.type != "DELETED" else None
        ns, name = key
        if old is not None and old.stub is not None and old is not new:
            from edgecore.dmi import api_pb2 as dmi

            self._sent.pop(key, None)
            await old.stub.RemoveDevice(
                dmi.RemoveDeviceRequest(deviceName=name, deviceNamespace=ns),
                timeout=self._settings.call_timeout,
            )
        if new is None or new.stub is None:
            self._sent.pop(key, None)
            return
        await self._hand_over(new, key, event.obj)

    async def _hand_over(self, mapper: Mapper, key: tuple[str, str], obj: dict[str, Any]) -> None:
        """Give ``mapper`` the Device ``obj``: its model first (a stock mapper refuses a
        Device whose model it lacks, so a Device whose model is not on the edge yet waits for
        it), then ``RegisterDevice``, or ``UpdateDevice`` when the mapper has it already and it
        changed (a stock mapper restarts the device on each)."""
        from edgecore.dmi import api_pb2 as dmi
        from edgecore.dmi.convert import device_to_dmi, model_to_dmi

        timeout = self._settings.call_timeout
        models = self._models_of([obj])
        if not models:
            log.info("DMI: device %s/%s waits for its model", *key)
            return
        model = models[0]
        mkey = "/".join(_key(model))
        if mkey not in mapper.models:
            await mapper.stub.CreateDeviceModel(
                dmi.CreateDeviceModelRequest(model=model_to_dmi(model)), timeout=timeout
            )
            mapper.models.add(mkey)
        device = device_to_dmi(obj)
        if key not in self._sent:
            await mapper.stub.RegisterDevice(
                dmi.RegisterDeviceRequest(device=device), timeout=timeout
            )
        elif device != self._sent[key]:
            await mapper.stub.UpdateDevice(dmi.UpdateDeviceRequest(device=device), timeout=timeout)
        self._sent[key] = device

    async def _model_event(self, event: StoreEvent) -> None:
        key = _key(event.obj)
        mkey = "/".join(key)
        if event.type == "DELETED":
            self._models.pop(key, None)
        else:
            self._models[key] = event.obj
        timeout = self._settings.call_timeout
        for mapper in list(self.mappers.values()):
            if mapper.stub is None:
                continue
            from edgecore.dmi import api_pb2 as dmi
            from edgecore.dmi.convert import model_to_dmi

            if mkey not in mapper.models:
                if event.type != "DELETED":
                    await self._waiting_for(mapper, key)
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

    async def _waiting_for(self, mapper: Mapper, model: tuple[str, str]) -> None:
        """Hand ``mapper`` its Devices that were waiting for ``model``."""
        for key, obj in list(self._devices.items()):
            if key in self._sent or protocol_of(obj) != mapper.protocol:
                continue
            if self._models_of([obj]) and _key(self._models_of([obj])[0]) == model:
                await self._hand_over(mapper, key, obj)


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
