"""Measuring a benchmark run: a process's RSS and CPU and the machine's from ``/proc``
(:class:`CpuMeter`), percentiles, the final :class:`Figures` block on stdout, the shared
``main`` runner, and py-spy profiling."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def proc_status(pid: int) -> dict[str, int]:
    """The ``Vm*`` lines of ``/proc/PID/status`` in KiB (``VmRSS``, ``VmHWM``...), or ``{}``."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if name.startswith("Vm") and len(parts) == 2 and parts[1] == "kB":
            out[name] = int(parts[0])
    return out


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (0 if the process is gone)."""
    return proc_status(pid).get("VmRSS", 0)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (``fields[0]`` is the state,
    field 3 of stat), or ``None`` if the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (0.0 if the process is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # utime and stime are fields 14 and 15 of stat
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int, *, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Every live descendant of ``pid`` (children, grandchildren...), found afresh each call;
    a process in ``exclude`` is left out together with its own descendants.

    One scan of ``/proc/*/stat`` for parent ids (``/proc/PID/task/TID/children`` needs a
    kernel option not every kernel has): a few ms, and only done when a meter samples (start
    and stop of a phase), not per message.
    """
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = [k for k in children.get(todo.pop(), []) if k not in exclude]
        found.extend(kids)
        todo.extend(kids)
    return found


def process_tree(pid: int, *, exclude: frozenset[int] = frozenset()) -> list[int]:
    """``pid`` and its live descendants (see :func:`descendants`); ``[]`` if ``pid`` is
    excluded."""
    if pid in exclude:
        return []
    return [pid, *descendants(pid, exclude=exclude)]


def tree_cpu_seconds(pid: int, *, exclude: frozenset[int] = frozenset()) -> float:
    """CPU seconds of ``pid`` and all its descendants (minus those in ``exclude`` and their
    subtrees), for a server whose work is spread over helper processes (cloudhub's link
    workers terminate TLS for it, so their CPU is cloudhub's).

    Each process counts its own user + system time plus the time of the children it has
    reaped (cutime + cstime), so a helper that exits between two samples still counts: its
    last live figure moves into its parent's reaped-children time.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in process_tree(pid, exclude=exclude):
        fields = _stat_fields(p)
        if fields is None:
            continue
        # utime, stime, cutime, cstime are fields 14-17 of stat
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / ticks


def tree_rss_kib(pid: int) -> int:
    """RSS of ``pid`` plus all its descendants in KiB. Pages shared between them (a forked
    child's copy-on-write pages, shared libraries) are counted once per process, so this is
    an upper bound of the tree's footprint."""
    return sum(rss_kib(p) for p in process_tree(pid))


def host_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


class CpuMeter:
    """CPU seconds of named processes and of the host between two snapshots.

    Names in ``trees`` count each of their processes together with its descendants, found
    afresh at every snapshot (a server that spawns helper processes, e.g. cloudhub's link
    workers). A descendant that is itself listed under any name is left out of the tree, with
    its subtree, so nothing is counted twice.
    """

    def __init__(
        self,
        pids: dict[str, list[int]],
        *,
        trees: Iterable[str] = (),
        views: Iterable[str] = (),
    ) -> None:
        """``views``: names whose processes are counted under another name too (e.g. a
        server's main process alone, next to its tree); left out of ``others``."""
        self.pids = pids
        self.trees = frozenset(trees)
        self.views = frozenset(views)
        unknown = self.trees - pids.keys()
        if unknown:
            raise ValueError(f"tree names not among the pids: {sorted(unknown)}")
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}
        self._host0 = (0, 0)

    def _cpu(self) -> dict[str, float]:
        listed = frozenset(p for v in self.pids.values() for p in v)
        out: dict[str, float] = {}
        for k, v in self.pids.items():
            if k in self.trees:
                out[k] = sum(tree_cpu_seconds(p, exclude=listed - {p}) for p in v)
            else:
                out[k] = sum(cpu_seconds(p) for p in v)
        return out

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._cpu0 = self._cpu()
        self._host0 = host_cpu_ticks()

    def stop(self) -> dict[str, float]:
        """% of one core per name over the interval, ``host_busy`` in % of all cores, ``others``
        (% of a core used by processes not named) and ``seconds`` (the interval)."""
        dt = max(1e-6, time.monotonic() - self._t0)
        cpu = self._cpu()
        out = {k: 100.0 * (cpu[k] - self._cpu0.get(k, 0.0)) / dt for k in cpu}
        busy, total = host_cpu_ticks()
        dtotal = total - self._host0[1]
        out["host_busy"] = 100.0 * (busy - self._host0[0]) / dtotal if dtotal else math.nan
        # what the rest of the machine used meanwhile: > a few % means the figures are a floor
        ours = sum(out[k] for k in cpu if k not in self.views)
        out["others"] = max(0.0, out["host_busy"] * (os.cpu_count() or 1) - ours)
        out["seconds"] = dt
        return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; ``nan`` for no values."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


class Figures:
    """The final block: ``name: value unit`` lines on stdout, in the order they were added."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._rows: list[tuple[str, str, str]] = []

    def add(self, name: str, value: float | int | str, unit: str = "", *, digits: int = 1) -> None:
        if isinstance(value, float):
            text = "nan" if math.isnan(value) else f"{value:.{digits}f}"
        else:
            text = str(value)
        self._rows.append((name, text, unit))

    def ratio(self, name: str, num: float, den: float, *, digits: int = 3) -> None:
        """``num / den`` (``nan`` when the denominator is 0)."""
        self.add(name, num / den if den else math.nan, "", digits=digits)

    def value(self, name: str) -> float:
        """A figure added earlier, as a number (``nan`` if absent or not numeric)."""
        for row, text, _unit in self._rows:
            if row == name:
                try:
                    return float(text)
                except ValueError:
                    return math.nan
        return math.nan

    def print(self) -> None:
        print(f"== {self.title} ==")
        for name, text, unit in self._rows:
            print(f"{name}: {text} {unit}".rstrip())
        sys.stdout.flush()


def add_host_figures(fig: Figures, load_at_start: float) -> None:
    """CPU count and load average, so a run on a busy or small machine reads as such."""
    fig.add("host_cpus", os.cpu_count() or 0, "CPUs")
    fig.add("host_load_1m_start", load_at_start, "(load average when the run began)", digits=2)
    fig.add("host_load_1m_end", os.getloadavg()[0], "(load average at the end)", digits=2)


def run_benchmark(
    fig: Figures,
    coro: Coroutine[Any, Any, Any],
    *,
    timeout: float,
    pass_fail: bool = True,
    catch_interrupt: bool = False,
    before_host: Callable[[], None] | None = None,
) -> int:
    """Run ``coro`` under a hard ``timeout``, then print ``fig`` with the host figures last.

    Returns the exit code: 1 on a timeout or an error (the figures gathered so far are still
    printed), 130 on Ctrl-C when ``catch_interrupt``; otherwise 0, or with ``pass_fail`` 0 or 1
    as the coroutine returned true or false. ``before_host`` adds figures of the caller's just
    before the host figures.
    """
    code = 0
    load0 = os.getloadavg()[0]
    try:
        result = asyncio.run(asyncio.wait_for(coro, timeout))
        if pass_fail:
            code = 0 if result else 1
    except TimeoutError:
        log.error("hard timeout of %.0fs reached; figures so far below", timeout)
        code = 1
    except KeyboardInterrupt:
        if not catch_interrupt:
            raise
        code = 130
    except Exception as exc:
        log.error("run failed: %s: %s", type(exc).__name__, exc)
        code = 1
    if before_host is not None:
        before_host()
    add_host_figures(fig, load0)
    fig.print()
    return code


# -- profiling ----------------------------------------------------------------------------------


class PySpy:
    """Samples a process with ``py-spy record --format raw`` (collapsed stacks) while active.

    py-spy is not a dependency of edgebridge; when it is not on PATH this does nothing but say
    so. ``--nonblocking`` keeps the sampled process running between samples, so the profile
    perturbs the figures only slightly.
    """

    def __init__(self, *, pid: int, out: Path, rate: int = 250) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("py-spy")
        if exe is None:
            log.warning("py-spy is not installed (pip install py-spy); not profiling")
            return
        self._popen = subprocess.Popen(
            [exe, "record", "--pid", str(self.pid), "--output", str(self.out), "--format",
             "raw", "--rate", str(self.rate), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        log.info("profiling pid %d into %s", self.pid, self.out)

    def stop(self) -> None:
        """Stop sampling (SIGINT makes py-spy write its output) and log a summary."""
        p, self._popen = self._popen, None
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if self.out.exists():
            for line in summarize_collapsed(self.out):
                log.info("%s", line)


def summarize_collapsed(path: Path, *, top: int = 25) -> list[str]:
    """Top functions by self and by inclusive samples from a collapsed-stack file."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + count
    if not total:
        return ["profile: no samples"]
    out = [f"profile of {path.name}: {total} samples; top by self time:"]
    for frame, c in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  self {100 * c / total:5.1f}%  {frame}")
    out.append("top by inclusive time:")
    for frame, c in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  incl {100 * c / total:5.1f}%  {frame}")
    return out
