"""A Device property's ``collectCycle`` / ``reportCycle``: what the number means, pure.

KubeEdge's API documents milliseconds (``collectCycle: 2000``) but its mapper framework turns
the number into a Go ``time.Duration``, i.e. nanoseconds, and some published samples write
``10000000000`` for ten seconds. A cycle of a million or more cannot mean milliseconds (16
minutes is no collect cycle) nor nanoseconds below a millisecond, so numbers from
``1_000_000`` up are read as nanoseconds and smaller ones as milliseconds; both samples then
mean what their authors meant. Absent or zero means one second, as KubeEdge's default.
Our mapper reads cycles in seconds; a stock mapper (over DMI) is handed nanoseconds.
"""

from __future__ import annotations

from typing import Final

#: seconds, when a property gives no cycle (KubeEdge's mapper framework default)
DEFAULT_CYCLE: Final = 1.0
#: cycles from this number up are nanoseconds, below it milliseconds (see the module notes)
NANOSECONDS_FROM: Final = 1_000_000
#: the fastest cycle a property may ask for, in seconds: faster only burns the bus
MIN_CYCLE: Final = 0.05


def cycle_seconds(raw: int) -> float:
    """A KubeEdge ``collectCycle``/``reportCycle`` number in seconds (see the module notes)."""
    if raw <= 0:
        return DEFAULT_CYCLE
    seconds = raw / 1e9 if raw >= NANOSECONDS_FROM else raw / 1e3
    return max(seconds, MIN_CYCLE)


def cycle_nanoseconds(raw: int) -> int:
    """The same cycle as the Go ``time.Duration`` a mapper-framework mapper reads."""
    return round(cycle_seconds(raw) * 1e9)
