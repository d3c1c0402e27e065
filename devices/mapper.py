"""The mapper: every device bound to this edge that it has a driver for, served from one process.

It follows the edge local API (:mod:`devices.source`) for Devices and DeviceModels and keeps
one :class:`~devices.worker.Worker` per device it serves, all sharing one broker connection
(:mod:`devices.link`). Whenever the objects change it reconciles:

- a new Device gets a worker; a Device whose configuration changed (protocol, visitors,
  cycles, its model's types) gets a new worker with a new driver; a deleted one is told
  ``offline`` and stopped. Desired values are not configuration: they arrive on the twin.
- a Device it cannot serve (no driver for its protocol, a model that is missing, configData
  the driver refuses) gets one log line naming the reason and a ``state/update`` of
  ``unknown``; it is tried again when its objects change. Nothing stops the other devices.

With ``--device`` only that Device is served (the KubeEdge one-mapper-per-device style).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from devices.config import DeviceConfig, device_config, identify, model_key
from devices.driver import Registry
from devices.link import Link, parse_broker
from devices.source import Source
from devices.state import OFFLINE
from devices.worker import Worker, now_ms, topic_id
from wire import topics
from wire.errors import ConfigError
from wire.twin import MAX_REASON, ResultIn, state_out

log = logging.getLogger(__name__)

#: how long a clean stop waits to tell the edge its devices are ``offline``
GOODBYE_TIMEOUT: Final = 2.0


class MapperSettings(BaseModel):
    """How the mapper runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: str = Field(
        default="mqtt://127.0.0.1:11883", description="the edge broker, mqtt://host:port"
    )
    device: str | None = Field(default=None, min_length=1, description="serve only this Device")
    namespace: str = Field(default="default", min_length=1, description="namespace of --device")
    keepalive: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive, seconds")
    reconnect_initial: float = Field(
        default=0.5, gt=0, description="first broker/local-API retry ceiling, seconds (jittered)"
    )
    reconnect_cap: float = Field(default=10.0, gt=0, description="longest retry delay, seconds")
    device_reconnect_cap: float = Field(
        default=10.0, gt=0, description="longest delay between reconnects to a device, seconds"
    )


class Mapper:
    """Serves devices until cancelled.

    Args:
        settings: see :class:`MapperSettings`.
        source: where Devices and DeviceModels come from (the edge local API, or static).
        registry: the drivers (default: built-ins and installed entry points).
        rng: jitter for every back-off.

    Raises:
        ConfigError: the broker URL does not parse.
    """

    def __init__(
        self,
        settings: MapperSettings,
        source: Source,
        *,
        registry: Registry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.registry = registry or Registry()
        self._rng = rng or random.Random()
        #: the last DeviceModel seen under each key: a model that vanishes while its Devices
        #: remain (deleted past the cloud's check, or its delete reaching the edge before the
        #: Device's) keeps serving them as it was, as the edge's twin does
        self._last_models: dict[str, dict[str, Any]] = {}
        will = None
        if settings.device is not None:
            # one device, one connection: the broker can say "offline" for us if we die; a
            # connection has one will, so a mapper of many devices cannot
            ns = None if settings.namespace == "default" else settings.namespace
            ident = topics.device_id(ns, settings.device)
            will = (topics.state_update(ident), state_out("will", now_ms(), OFFLINE))
        self.link = Link(
            parse_broker(settings.broker),
            handler=self._on_message,
            on_connect=self._on_connect,
            keepalive=settings.keepalive,
            will=will,
            reconnect_initial=settings.reconnect_initial,
            reconnect_cap=settings.reconnect_cap,
            rng=self._rng,
        )
        #: topic id -> worker, and its task
        self.workers: dict[str, Worker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: topic id -> why it is not served (logged once per reason)
        self.unserved: dict[str, str] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask :meth:`run` to say ``offline`` for every device served and return."""
        self._stopping.set()

    async def run(self) -> None:
        """Follow the source and serve until :meth:`stop` (or cancellation).

        A stop tells the edge every served device is ``offline`` while the broker connection is
        still up; a cancellation just stops.
        """
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.link.run(), name="mapper-link"),
                    tg.create_task(self.source.run(), name="mapper-source"),
                    tg.create_task(self._reconcile_loop(), name="mapper-reconcile"),
                ]
                await self._stopping.wait()
                served = list(self.workers.values())
                await self._stop_all()
                await self.link.goodbye(
                    [
                        (
                            topics.state_update(w.id),
                            state_out(str(uuid.uuid4()), now_ms(), OFFLINE, "the mapper stopped"),
                        )
                        for w in served
                    ],
                    GOODBYE_TIMEOUT,
                )
                for task in tasks:
                    task.cancel()
        finally:
            await self._stop_all()

    async def _reconcile_loop(self) -> None:
        while True:
            await self.source.changed.wait()
            self.source.changed.clear()
            await self.reconcile()

    def _wanted(self, device: dict[str, Any]) -> bool:
        if self.settings.device is None:
            return True
        return identify(device) == (self.settings.namespace, self.settings.device)

    async def reconcile(self) -> None:
        """Start, restart and stop workers to match the source's objects."""
        wanted: dict[str, DeviceConfig] = {}
        # a snapshot: the source's watch updates its dicts while this awaits a driver
        for device in list(self.source.devices.values()):
            if not self._wanted(device):
                continue
            ns, name = identify(device)
            ident = topics.device_id(None if ns == "default" else ns, name)
            mkey = model_key(device)
            model = self._model(ident, mkey)
            try:
                config = device_config(device, model)
                if not self.registry.serves(config.protocol):
                    raise ConfigError(
                        f"device {config.key}: no driver for protocol {config.protocol!r}"
                        f" (installed: {', '.join(self.registry.names)})"
                    )
                if ident in self.workers and self.workers[ident].config == config:
                    wanted[ident] = config
                    continue
                driver = self.registry.create(config)
            except ConfigError as exc:
                await self._stop(ident)
                await self._unserved(ident, str(exc))
                continue
            except Exception as exc:  # a third-party driver's bug must not stop the mapper
                log.exception("%s: creating its driver failed", ident)
                await self._stop(ident)
                await self._unserved(ident, f"driver error: {type(exc).__name__}: {exc}")
                continue
            await self._stop(ident)
            self.unserved.pop(ident, None)
            wanted[ident] = config
            self._start(ident, config, driver)
        for ident in [i for i in self.workers if i not in wanted]:
            log.info("%s: no longer bound to this edge; stopped", ident)
            await self._stop(ident, goodbye=True)
        for ident in [i for i in self.unserved if not self._still_listed(i)]:
            del self.unserved[ident]
        if self.settings.device is not None and not wanted and not self.unserved:
            log.warning(
                "device %s/%s is not bound to this edge (yet)",
                self.settings.namespace,
                self.settings.device,
            )

    def _model(self, ident: str, mkey: str | None) -> dict[str, Any] | None:
        """The Device's model: the listed one, else the last one seen under that key."""
        if mkey is None:
            return None
        model = self.source.models.get(mkey)
        if model is not None:
            self._last_models[mkey] = model
            return model
        kept = self._last_models.get(mkey)
        if kept is not None and ident in self.workers:
            log.warning("%s: device model %s is gone; serving with the last one seen", ident, mkey)
        return kept if ident in self.workers else None

    def _still_listed(self, ident: str) -> bool:
        for device in self.source.devices.values():
            ns, name = identify(device)
            if topics.device_id(None if ns == "default" else ns, name) == ident:
                return True
        return False

    def _start(self, ident: str, config: DeviceConfig, driver: Any) -> None:
        worker = Worker(
            config,
            driver,
            self.link,
            reconnect_cap=self.settings.device_reconnect_cap,
            rng=self._rng,
        )
        self.workers[ident] = worker
        self._tasks[ident] = asyncio.create_task(worker.run(), name=f"device-{ident}")
        props = ", ".join(v.name for v in config.properties) or "no properties"
        log.info("%s: serving over %s (%s)", ident, config.protocol, props)

    async def _stop(self, ident: str, *, goodbye: bool = False) -> None:
        worker = self.workers.pop(ident, None)
        task = self._tasks.pop(ident, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if worker is not None and goodbye:
            await worker.stop()

    async def _stop_all(self) -> None:
        for ident in list(self.workers):
            await self._stop(ident)

    async def _unserved(self, ident: str, reason: str) -> None:
        if self.unserved.get(ident) != reason:
            log.warning("%s: not served: %s", ident, reason)
        self.unserved[ident] = reason
        await self.link.publish(topics.state_update(ident), _unknown(reason))

    # ------------------------------------------------------------------ link callbacks

    async def _on_connect(self) -> None:
        for worker in list(self.workers.values()):
            await worker.on_connect()
        for ident, reason in list(self.unserved.items()):
            await self.link.publish(topics.state_update(ident), _unknown(reason))

    async def _on_message(self, ident: str, kind: topics.Kind, msg: ResultIn) -> None:
        worker = self.workers.get(ident)
        if worker is not None:
            worker.on_message(kind, msg)
        elif kind == "twin_update_result" and msg.failed and ident in self.unserved:
            log.debug("%s: %s", ident, msg.reason)


def _unknown(reason: str) -> dict[str, Any]:
    """``state/update`` of a device the mapper cannot serve, with why."""
    return state_out(str(uuid.uuid4()), now_ms(), "unknown", reason[:MAX_REASON])


__all__ = ["Mapper", "MapperSettings", "topic_id"]
