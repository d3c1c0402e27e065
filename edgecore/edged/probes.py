"""Liveness and readiness probes: when one is due and what its results add up to. Pure.

The module runs the probe (``exec`` through the CRI's ExecSync, ``httpGet`` to the pod's IP)
and feeds the outcome here; :class:`ProbeState` applies kubelet's rules: nothing before
``initialDelaySeconds`` after the container started, then one probe every ``periodSeconds``;
``failureThreshold`` failures in a row make it fail, ``successThreshold`` successes in a row
make it pass. A readiness probe starts as failed (not ready until it passes); a liveness probe
starts as passed (a container is alive until proven otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecore.edged.podspec import Probe


@dataclass(slots=True)
class ProbeState:
    probe: Probe
    #: container start time, seconds
    started_at: float
    passing: bool
    failures: int = 0
    successes: int = 0
    last_run: float | None = None
    last_message: str = ""

    @classmethod
    def readiness(cls, probe: Probe, started_at: float) -> ProbeState:
        return cls(probe, started_at, passing=False)

    @classmethod
    def liveness(cls, probe: Probe, started_at: float) -> ProbeState:
        return cls(probe, started_at, passing=True)

    def due_at(self) -> float:
        first = self.started_at + self.probe.initialDelaySeconds
        if self.last_run is None:
            return first
        return max(first, self.last_run + self.probe.periodSeconds)

    def record(self, ok: bool, now: float, message: str = "") -> bool:
        """Take one outcome; whether ``passing`` changed."""
        self.last_run = now
        self.last_message = message
        before = self.passing
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.probe.successThreshold:
                self.passing = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.probe.failureThreshold:
                self.passing = False
        return before != self.passing
