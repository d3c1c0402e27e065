"""One device's decisions, pure: what to read, report and write, and whether it is online.

The worker (:mod:`devices.worker`) does the I/O and asks this object what to do next, passing
the time in; tests drive it without a device, a broker or a clock.

- **Cycles.** Each property is read every ``collectCycle`` and its latest value reported every
  ``reportCycle`` (KubeEdge's two knobs). Deadlines advance at a fixed rate, not a fixed delay,
  so a slow device does not stretch the cycle; after a stall they resume from now instead of
  firing a burst of missed cycles.
- **Reports.** A report carries the last value read of each property due, as its twin string.
  When that value equals the desired one (as the type compares: ``21.50`` and ``21.5``), it is
  reported in the desired value's own spelling, so the cloud, which compares strings, sees the
  device in sync.
- **Desired values.** A delta or the twin from ``twin/get`` gives desired values. Writable ones
  that parse as the property's type become pending writes; the others are refused with a
  reason. A pending write is dropped once written, and re-queued when a read shows the device
  drifted from it (someone changed the register on the device itself) — the edge's delta would
  say the same after the next report; this only saves the round trip.
- **Health.** ``online`` after a successful connect or read, ``offline`` after
  :attr:`offline_after` consecutive failures to reach the device; ``unknown`` before either, or
  when the device cannot be served at all (bad config). Only changes are published.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from devices.config import DeviceConfig, Visitor
from devices.values import Value, format_value, parse, same
from wire.errors import PropertyError

State = Literal["unknown", "online", "offline"]
ONLINE: Final[State] = "online"
OFFLINE: Final[State] = "offline"
UNKNOWN: Final[State] = "unknown"


@dataclass(slots=True)
class _Prop:
    visitor: Visitor
    next_read: float
    next_report: float
    #: the last value read, as its twin string
    value: str | None = None
    #: a new value (or the first) since the last report
    fresh: bool = False
    #: the desired value as the twin spells it, and typed
    desired: str | None = None
    desired_value: Value | None = None
    #: the desired value still has to be written
    pending: bool = False
    #: the device refused the desired value: no retries until a new one comes
    refused: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """A desired value the mapper will not write, and why."""

    name: str
    value: str
    reason: str


@dataclass
class DeviceState:
    """The decisions for one device.

    Args:
        config: the device.
        now: the time the device starts being served (seconds, any monotonic origin).
        offline_after: consecutive failures to reach the device before it is ``offline``.
    """

    config: DeviceConfig
    now: float
    offline_after: int = 1
    state: State = UNKNOWN
    failures: int = 0
    _props: dict[str, _Prop] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._props = {
            v.name: _Prop(v, next_read=self.now, next_report=self.now + v.report_cycle)
            for v in self.config.properties
        }

    # ------------------------------------------------------------------------- cycles

    def due_reads(self, now: float) -> list[Visitor]:
        """Properties to read now; their next read is scheduled one cycle on."""
        out = []
        for p in self._props.values():
            if p.next_read <= now:
                out.append(p.visitor)
                p.next_read = _advance(p.next_read, p.visitor.collect_cycle, now)
        return out

    def due_reports(self, now: float) -> dict[str, str]:
        """Values to report now (name -> twin string); their next report is one cycle on."""
        out: dict[str, str] = {}
        for name, p in self._props.items():
            if p.next_report <= now:
                p.next_report = _advance(p.next_report, p.visitor.report_cycle, now)
                if p.value is not None and p.visitor.report:
                    out[name] = p.value
                    p.fresh = False
        return out

    def next_deadline(self) -> float | None:
        """When the next read or report is due (``None``: nothing to do, no properties)."""
        times = [min(p.next_read, p.next_report) for p in self._props.values()]
        return min(times, default=None)

    def type_of(self, name: str) -> str:
        """The property's model type (STRING for an unknown name)."""
        p = self._props.get(name)
        return p.visitor.type if p else "STRING"

    # ------------------------------------------------------------------------- values

    def on_read(self, name: str, value: Value) -> str:
        """Record a value read from the device; returns its twin string."""
        p = self._props[name]
        typ = p.visitor.type
        if p.desired_value is not None and same(typ, value, p.desired_value):
            text = p.desired or format_value(typ, value)
        else:
            text = format_value(typ, value)
            if p.desired_value is not None and p.visitor.writable and not p.refused:
                # drifted from the desired value on the device itself: write it again
                p.pending = True
        if text != p.value:
            p.fresh = True
        p.value = text
        return text

    def value(self, name: str) -> str | None:
        """The last value read of ``name``, as its twin string."""
        p = self._props.get(name)
        return p.value if p else None

    def on_desired(self, desired: Mapping[str, str], *, whole: bool = False) -> list[Refused]:
        """Take desired values from a delta (``whole=False``) or from the whole twin.

        With ``whole=True`` a property missing from ``desired`` has no desired value any more.
        Returns the values refused; the accepted ones become pending writes unless the device
        already holds them.
        """
        refused: list[Refused] = []
        if whole:
            for name, p in self._props.items():
                if name not in desired:
                    p.desired = p.desired_value = None
                    p.pending = p.refused = False
        for name, text in desired.items():
            found = self._props.get(name)
            if found is None:
                refused.append(Refused(name, text, "the device has no such property"))
                continue
            p = found
            if not p.visitor.writable:
                refused.append(Refused(name, text, "the property is ReadOnly"))
                continue
            try:
                typed = parse(p.visitor.type, text)
            except PropertyError as exc:
                refused.append(Refused(name, text, str(exc)))
                continue
            p.desired, p.desired_value, p.refused = text, typed, False
            held = p.value is not None and same(p.visitor.type, parse_or_none(p), typed)
            p.pending = not held
        return refused

    def pending_writes(self) -> dict[str, tuple[Visitor, Value]]:
        """Desired values still to be written (name -> visitor, typed value)."""
        return {
            name: (p.visitor, p.desired_value)
            for name, p in self._props.items()
            if p.pending and p.desired_value is not None
        }

    def on_written(self, name: str, now: float) -> None:
        """A desired value was written; it is read back and reported at once."""
        self._props[name].pending = False
        self.report_now([name], now)

    def on_write_refused(self, name: str) -> None:
        """The device refused the desired value: stop trying until a new one comes."""
        p = self._props[name]
        p.pending = False
        p.refused = True

    def desired(self) -> dict[str, str]:
        """Desired values known, as the twin spells them."""
        return {n: p.desired for n, p in self._props.items() if p.desired is not None}

    def read_all_now(self, now: float) -> None:
        """Schedule every property for an immediate read and report (after a reconnect)."""
        self.now = now
        for p in self._props.values():
            p.next_read = now
            p.next_report = now

    def report_now(self, names: Iterable[str], now: float) -> None:
        """Report ``names`` at the next chance (after a write, so the cloud sees it at once)."""
        for name in names:
            p = self._props.get(name)
            if p is not None:
                p.next_read = min(p.next_read, now)
                p.next_report = min(p.next_report, now)

    # ------------------------------------------------------------------------- health

    def on_reached(self) -> State | None:
        """The device answered; returns the new state if it changed."""
        self.failures = 0
        return self._become(ONLINE)

    def on_unreachable(self) -> State | None:
        """The device did not answer; returns the new state if it changed."""
        self.failures += 1
        if self.failures >= self.offline_after:
            return self._become(OFFLINE)
        return None

    def _become(self, state: State) -> State | None:
        if state == self.state:
            return None
        self.state = state
        return state


def parse_or_none(p: _Prop) -> Value:
    """The last value read, typed (its string when it does not parse, which never equals)."""
    assert p.value is not None
    try:
        return parse(p.visitor.type, p.value)
    except PropertyError:
        return p.value


def _advance(deadline: float, cycle: float, now: float) -> float:
    nxt = deadline + cycle
    return nxt if nxt > now else now + cycle
