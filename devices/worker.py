"""One device served: its driver, its cycles and its twin, as one task.

The worker is a pump around :class:`devices.state.DeviceState`: it waits for the next deadline
(or a desired value arriving), asks the state what is due, does that I/O through the
:class:`~devices.driver.Driver`, feeds the results back, and publishes what the state says
through the shared :class:`~devices.link.Link`.

Failures stay small:

- a property the device refuses is one log line (repeated only when the reason changes) and
  the other properties go on;
- a device that does not answer is closed, reported ``offline`` (``state/update``) and
  reconnected with jittered back-off; once it answers it is ``online`` again, every property is
  read and reported at once, and the twin is asked for again so desired values set meanwhile
  are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Final

from devices.config import DeviceConfig, Visitor
from devices.driver import BatchReader, Driver
from devices.link import Link
from devices.state import OFFLINE, ONLINE, DeviceState, State
from devices.values import Value
from hive.backoff import backoff
from wire import topics
from wire.errors import DeviceUnreachable, PropertyError
from wire.twin import MAX_REASON, ResultIn, actual_report, base_result, state_out

log = logging.getLogger(__name__)

#: back-off after a device stops answering: the first retry within one collect cycle, then
#: doubling up to this many seconds (a device back from a power cut is found soon enough)
RECONNECT_CAP: Final = 10.0


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every KubeEdge ``timestamp``."""
    return time.time_ns() // 1_000_000


def topic_id(config: DeviceConfig) -> str:
    """The id in the device's topics: ``name`` in the default namespace, else ``ns/name``.

    What KubeEdge's edge uses since v1.16; the edge answers on whichever form the mapper used.
    """
    return topics.device_id(
        None if config.namespace == "default" else config.namespace, config.name
    )


class Worker:
    """Serves one device until cancelled.

    Args:
        config: the device.
        driver: its driver (not yet connected).
        link: the broker connection.
        reconnect_cap: longest back-off between reconnects, in seconds.
        rng: jitter for the back-off.
    """

    def __init__(
        self,
        config: DeviceConfig,
        driver: Driver,
        link: Link,
        *,
        reconnect_cap: float = RECONNECT_CAP,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.driver = driver
        #: the driver's batched read, if it has one (checked once: a Protocol check is slow)
        self._batch = driver if isinstance(driver, BatchReader) else None
        self.id = topic_id(config)
        self._link = link
        self._loop = asyncio.get_running_loop()
        self.state = DeviceState(config, now=self._loop.time())
        self._wake = asyncio.Event()
        self._connected = False
        self._cap = max(reconnect_cap, config.collect_cycle)
        self._rng = rng or random.Random()
        #: why the device was last found unreachable (sent with ``offline``)
        self._reason: str | None = None
        #: what is wrong with single properties (a refused read, a desired value the device
        #: refused), logged once each and sent as the ``online`` state's reason
        self._problems: dict[str, str] = {}
        #: the problems last sent with ``online``
        self._told = ""

    # ------------------------------------------------------------------ from the link

    async def on_connect(self) -> None:
        """The broker is (back): say our state and ask for the twin."""
        if self.state.state != "unknown":
            await self._publish_state(self.state.state)
        await self._link.publish(topics.twin_get(self.id), base_result(_event(), now_ms()))

    def on_message(self, kind: topics.Kind, msg: ResultIn) -> None:
        """A delta, a twin/get result or a twin/update result for this device."""
        if msg.failed:
            log.warning("%s: edge refused (%s): %s %s", self.id, kind, msg.code, msg.reason)
            return
        if kind == "twin_delta":
            self._desired(msg.delta, whole=False)
        elif kind == "twin_get_result":
            self._desired(msg.expected(), whole=True)

    def _desired(self, values: Mapping[str, str], *, whole: bool) -> None:
        for r in self.state.on_desired(values, whole=whole):
            log.warning("%s: desired %s=%s not applied: %s", self.id, r.name, r.value, r.reason)
        if self.state.pending_writes():
            self._wake.set()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Connect, serve the cycles, reconnect with back-off; until cancelled."""
        delays = self._backoff()
        if self._link.connected.is_set():
            await self.on_connect()  # started after the broker connected: ask for the twin now
        try:
            while True:
                if not self._connected:
                    if not await self._connect():
                        await asyncio.sleep(next(delays))
                        continue
                    delays = self._backoff()
                try:
                    await self._tick()
                except DeviceUnreachable as exc:
                    await self._lost(str(exc))
                    await asyncio.sleep(next(delays))
                except Exception as exc:  # a driver bug must not end the device silently
                    log.exception("%s: driver %s failed", self.id, self.config.protocol)
                    await self._lost(f"driver error: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(next(delays))
        finally:
            with contextlib.suppress(Exception):
                await self.driver.close()

    async def stop(self) -> None:
        """Say ``offline`` (the device is no longer served)."""
        self._reason = "the mapper no longer serves it"
        if self.state.state == ONLINE:
            await self._publish_state(OFFLINE)

    def _backoff(self) -> Iterator[float]:
        # the first retry within one collect cycle, so offline shows within a few cycles
        return backoff(initial=self.config.collect_cycle, cap=self._cap, rng=self._rng)

    async def _connect(self) -> bool:
        try:
            await self.driver.connect()
        except DeviceUnreachable as exc:
            await self._lost(str(exc))
            return False
        except Exception as exc:  # a driver bug: retried like an unreachable device
            log.exception("%s: driver %s failed to connect", self.id, self.config.protocol)
            await self._lost(f"driver error: {type(exc).__name__}: {exc}")
            return False
        self._connected = True
        # read everything at once; the device is online when it answers a read, not when a
        # connection opens (a gateway may accept one for a device that does not answer)
        self.state.read_all_now(self._loop.time())
        return True

    async def _lost(self, reason: str) -> None:
        if self._connected:
            self._connected = False
            with contextlib.suppress(Exception):  # closing a broken link may fail too
                await self.driver.close()
        changed = self.state.on_unreachable()
        if changed:
            log.warning("%s: %s: %s", self.id, changed, reason)
            self._reason = reason
            await self._publish_state(changed)
        else:
            log.debug("%s: still unreachable: %s", self.id, reason)

    async def _tick(self) -> None:
        deadline = self.state.next_deadline()
        if deadline is None:
            await self._wake.wait()  # no properties to read: only desired values wake us
        elif not self._wake.is_set():
            delay = deadline - self._loop.time()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        self._wake.clear()
        now = self._loop.time()
        await self._write_pending(now)
        for name, result in (await self._read(self.state.due_reads(now))).items():
            if isinstance(result, PropertyError):
                self._problem(name, f"reading {name} failed: {result}")
                continue
            self._problems.pop(name, None)
            self.state.on_read(name, result)
        if self.state.on_reached():
            log.info("%s: online (%s)", self.id, self.config.protocol)
            await self._publish_state(ONLINE)
            # desired values set while the device was away: ask for the twin again
            await self._link.publish(topics.twin_get(self.id), base_result(_event(), now_ms()))
        # a read may have shown drift from a desired value: write it back now
        await self._write_pending(now)
        if self.state.state == ONLINE and self._summary() != self._told:
            await self._publish_state(ONLINE)  # the device's status says what is wrong, or not
        due = self.state.due_reports(self._loop.time())
        if due:
            ts = now_ms()
            values = {n: (v, self.state.type_of(n).lower()) for n, v in due.items()}
            await self._link.publish(
                topics.twin_update(self.id), actual_report(_event(), ts, values)
            )
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s", self.id, " ".join(f"{n}={v}" for n, v in due.items()))

    async def _read(self, due: list[Visitor]) -> dict[str, Value | PropertyError]:
        if len(due) > 1 and self._batch is not None:
            return await self._batch.read_many(due)
        out: dict[str, Value | PropertyError] = {}
        for visitor in due:
            try:
                out[visitor.name] = await self.driver.read(visitor)
            except PropertyError as exc:
                out[visitor.name] = exc
        return out

    async def _write_pending(self, now: float) -> None:
        for name, (visitor, value) in self.state.pending_writes().items():
            try:
                await self.driver.write(visitor, value)
            except PropertyError as exc:
                self.state.on_write_refused(name)
                self._problem(f"{name}=", f"desired {name}={value} refused: {exc}")
                continue
            self._problems.pop(f"{name}=", None)
            self.state.on_written(name, now)
            log.info("%s: wrote desired %s=%s", self.id, name, self.state.desired().get(name))

    def _problem(self, key: str, line: str) -> None:
        if self._problems.get(key) != line:
            self._problems[key] = line
            log.warning("%s: %s", self.id, line)

    def _summary(self) -> str:
        return "; ".join(self._problems[k] for k in sorted(self._problems))[:MAX_REASON]

    async def _publish_state(self, state: State | str) -> None:
        reason: str | None = None
        if state == OFFLINE:
            reason = (self._reason or "")[:MAX_REASON]
        elif state == ONLINE:
            reason = self._told = self._summary()
        payload = state_out(_event(), now_ms(), state, reason or None)
        await self._link.publish(topics.state_update(self.id), payload)


def _event() -> str:
    return str(uuid.uuid4())
