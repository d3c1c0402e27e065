"""CPU per watch event in the edgecontroller and the fleet: ``python bench/controllers_path.py``.

In-process and deterministic (no network, no apiserver): an in-memory store hands the real
:class:`~cloudhub.edgecontroller.controller.EdgeController` and
:class:`~cloudhub.fleet.module.FleetModule` a list of ``--pods`` pods (bound to ``--nodes``
nodes), then ``--events`` pod watch events through the shared follow pump
(:func:`cloudhub.store.follow.follow`), each the kind a cluster sends most: an annotation patch
on a bound pod (new resourceVersion, annotation and managedFields time; spec and status as
they were), decoded afresh from its JSON text as a watch brings it. The pods look like the
apiserver's (defaults filled in, managedFields; ``--pod-json`` takes a real one as the model).

Printed: ``time.process_time()`` µs per event, the best of ``--repeats`` runs, for both
modules following the pump (``both``) and each alone: paced (every event alone, as a watch
delivers 50 updates/s), in bursts (``--burst`` events ready at once) and cold (paced, with the
CPU caches evicted before each event, as a 50/s watch meets them in a process sharing the
machine with the apiserver and the edges). ``--baseline DIR`` runs the same measurement on
another checkout (e.g. ``/work/main``) in a child process first and adds the ratios (ours /
baseline; below 1 is cheaper).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: the figures, in the order printed: (followers, mode); paced = every event alone, burst =
#: ``--burst`` events ready at once, cold = paced with the CPU caches evicted before each event
CASES = ("both_paced", "both_burst", "both_cold", "edgecontroller_cold", "fleet_cold")
#: bytes read between two events in the cold cases (a few times the L2 cache)
EVICT_BYTES = 16 << 20


def _env(i: int) -> dict[str, str]:
    return {"name": f"SETTING_{i}", "value": f"value-{i:04d}-abcdef"}


def _fields(envs: int) -> dict[str, Any]:
    """managedFields' fieldsV1 for the pod below, as an apply by one manager records it."""
    env: dict[str, Any] = {".": {}} | {
        f'k:{{"name":"SETTING_{i}"}}': {".": {}, "f:name": {}, "f:value": {}} for i in range(envs)
    }
    return {
        "f:metadata": {
            "f:annotations": {".": {}, "f:pb/seq": {}},
            "f:labels": {".": {}, "f:app": {}, "f:bench/node": {}},
        },
        "f:spec": {
            "f:containers": {
                'k:{"name":"app"}': {
                    ".": {},
                    "f:env": env,
                    "f:image": {},
                    "f:imagePullPolicy": {},
                    "f:name": {},
                    "f:resources": {".": {}, "f:limits": {".": {}, "f:cpu": {}, "f:memory": {}}},
                }
            },
            "f:nodeName": {},
            "f:restartPolicy": {},
        },
    }


def model_pod(envs: int = 10) -> dict[str, Any]:
    """A bound pod as the apiserver returns it (defaults, managedFields, a Pending status)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": {"pb/seq": "0"},
            "creationTimestamp": "2026-12-07T23:21:47Z",
            "labels": {"app": "bench", "bench/node": "n"},
            "managedFields": [
                {
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": _fields(envs),
                    "manager": "edgebridge-cloudhub",
                    "operation": "Update",
                    "time": "2026-12-07T23:21:47Z",
                }
            ],
            "name": "p",
            "namespace": "pb",
            "resourceVersion": "1",
            "uid": "12effc33-71db-4fe7-98af-4de770f68e66",
        },
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "env": [_env(i) for i in range(envs)],
                    "image": "registry.example.com/bench/app:1.0.0",
                    "imagePullPolicy": "IfNotPresent",
                    "name": "app",
                    "resources": {
                        "limits": {"cpu": "100m", "memory": "64Mi"},
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                }
            ],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": True,
            "nodeName": "n",
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {
                    "effect": "NoExecute",
                    "key": f"node.kubernetes.io/{what}",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                }
                for what in ("not-ready", "unreachable")
            ],
        },
        "status": {"phase": "Pending", "qosClass": "Guaranteed"},
    }


def _version(model: dict[str, Any], name: str, node: str, rv: int, seq: int) -> dict[str, Any]:
    pod = copy.deepcopy(model)
    meta = pod["metadata"]
    meta.update(name=name, namespace="pb", resourceVersion=str(rv))
    meta.setdefault("annotations", {})["pb/seq"] = str(seq)
    meta.setdefault("labels", {})["bench/node"] = node
    meta["uid"] = f"{name}-uid"
    for entry in meta.get("managedFields") or []:
        # the API server stamps to the second: 50 updates/s share one stamp
        entry["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1.8e9 + rv // 50))
    pod["spec"]["nodeName"] = node
    return pod


def _node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "resourceVersion": "1", "uid": f"{name}-uid"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


class _Store:
    """List and watch from memory: pods and nodes listed, then the pod events, timed."""

    def __init__(self, pods: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> None:
        self.objects = {"pod": pods, "node": nodes}
        #: the pod watch's events: their JSON text, in bursts of those ready at once
        self.bursts: list[list[str]] = []
        self.start = asyncio.Event()
        self.done = asyncio.Event()
        self.cpu = 0.0
        #: evict the CPU's caches before each burst (outside the time measured)
        self.cold = False
        #: count the work done (Python bytecodes and C calls) instead of timing
        self.count = False
        self.opcodes = 0
        self.c_calls = 0

    async def list(self, typ: str) -> tuple[list[dict[str, Any]], str]:
        return list(self.objects.get(typ, [])), "1"

    async def watch(self, typ: str, rv: str) -> AsyncIterator[Any]:
        from cloudhub.store.base import WatchEvent

        if typ != "pod":
            await asyncio.Event().wait()
        await self.start.wait()
        # No collection in the time measured: the decoding (untimed) makes most of the
        # garbage, and where a collection falls would decide the figures.
        gc.collect()
        gc.disable()
        # Every event in a process whose caches other processes used meanwhile (at 50
        # updates/s the apiserver, etcd and the edges run between two): reading a buffer
        # larger than the L2 cache evicts what the last event left there.
        evict = bytearray(EVICT_BYTES if self.cold else 0)
        for burst in self.bursts:
            if self.cold:
                evict.find(b"\x01")
            # decoded here, untimed, as the store decodes it just before (so it is warm)
            events = [
                WatchEvent("MODIFIED", json.loads(text), text, i < len(burst) - 1)
                for i, text in enumerate(burst)
            ]
            t0 = time.process_time()
            if self.count:
                sys.setprofile(self._profile)
                sys.settrace(self._trace)
            for event in events:
                yield event
            sys.settrace(None)
            sys.setprofile(None)
            self.cpu += time.process_time() - t0
        gc.enable()
        self.done.set()
        await asyncio.Event().wait()

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            self.c_calls += 1

    def _trace(self, frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return self._opcode

    def _opcode(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            self.opcodes += 1
        return self._opcode


async def _measure(
    which: str,
    model: dict[str, Any],
    pods: int,
    nodes: int,
    events: int,
    burst: int,
    cold: bool,
    count: bool = False,
) -> tuple[float, ...]:
    """µs of CPU per event for one run of ``which`` (both/edgecontroller/fleet); with
    ``count``, the Python bytecodes and C calls per event instead."""
    from cloudhub import routes
    from cloudhub.edgecontroller.controller import EdgeController
    from cloudhub.fleet.module import FleetModule
    from hive.bus import Bus

    names = [f"p{i:04d}" for i in range(pods)]
    where = {name: f"n{i % nodes:03d}" for i, name in enumerate(names)}
    listed = [_version(model, n, where[n], 1, 0) for n in names]
    store = _Store(listed, [_node(f"n{i:03d}") for i in range(nodes)])
    store.cold = cold
    store.count = count
    for i in range(events):
        name = names[i % pods]
        text = json.dumps(_version(model, name, where[name], 2 + i, 1 + i), separators=(",", ":"))
        if i % burst == 0:
            store.bursts.append([])
        store.bursts[-1].append(text)

    bus = Bus(inbox_size=events + 100)
    bus.register(routes.HUB, "hub")
    tasks = []
    ready: list[asyncio.Event] = []
    if which in ("both", "edgecontroller"):
        bus.register(routes.EDGECONTROLLER, "resource")
        ec = EdgeController(bus=bus, store=store, mark_offline_on_start=False)  # type: ignore[arg-type]
        tasks.append(asyncio.create_task(ec.run()))
        ready.append(ec.synced)
    if which in ("both", "fleet"):
        bus.register(routes.FLEET, routes.LIFECYCLE_GROUP)
        fleet = FleetModule(bus=bus, store=store, events=None)  # type: ignore[arg-type]
        tasks.append(asyncio.create_task(fleet.run()))
        ready.append(fleet.synced)
    for event in ready:
        await event.wait()
    store.start.set()
    await store.done.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if count:
        return store.opcodes / events, store.c_calls / events
    return (store.cpu / events * 1e6,)


def measure(args: argparse.Namespace, *, count: bool) -> dict[str, float]:
    """µs per event of each case, the best of ``--repeats`` runs; with ``count``, the
    Python bytecodes and C calls per event of ``both_paced`` too."""
    model = json.loads(Path(args.pod_json).read_text()) if args.pod_json else model_pod()
    out: dict[str, float] = {}
    for case in args.cases or CASES:
        which, mode = case.rsplit("_", 1)
        burst = args.burst if mode == "burst" else 1
        cold = mode == "cold"
        events = args.cold_events if cold else args.events
        runs = [
            asyncio.run(_measure(which, model, args.pods, args.nodes, events, burst, cold))[0]
            for _ in range(args.repeats)
        ]
        out[case] = min(runs)
    if count:
        # deterministic, where the times vary with what the machine's other processes do
        out["opcodes"], out["c_calls"] = asyncio.run(
            _measure("both", model, args.pods, args.nodes, args.events, 1, False, count=True)
        )
    return out


def _baseline(args: argparse.Namespace, *, count: bool) -> dict[str, float]:
    """:func:`measure` run on the ``--baseline`` checkout, in a child process."""
    argv = [
        *("--pods", str(args.pods), "--nodes", str(args.nodes), "--events", str(args.events)),
        *("--cold-events", str(args.cold_events), "--burst", str(args.burst)),
        *("--repeats", str(args.repeats), "--tree", args.baseline, "--json"),
        *(["--pod-json", args.pod_json] if args.pod_json else []),
        *(["--cases", *args.cases] if args.cases else []),
        *([] if count else ["--no-count"]),
    ]
    child = subprocess.run(
        [sys.executable, __file__, *argv],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": args.baseline},
    )
    result: dict[str, float] = json.loads(child.stdout)
    return result


#: what each figure is called and counted in
_FIGURES = {
    "opcodes": ("both_paced_bytecodes_per_event", "(Python bytecodes run)"),
    "c_calls": ("both_paced_c_calls_per_event", "(calls of C functions)"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--events", type=int, default=2000, help="watch events per run")
    parser.add_argument("--cold-events", type=int, default=400, help="events per cold run")
    parser.add_argument("--burst", type=int, default=10, help="events ready at once (burst)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case and round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds, baseline and ours alternating (best kept)"
    )
    parser.add_argument("--cases", nargs="+", choices=CASES, help="measure only these")
    parser.add_argument("--pod-json", help="a pod as the apiserver returns it, as the model")
    parser.add_argument("--baseline", help="another checkout to measure too, for ratios")
    parser.add_argument("--tree", help=argparse.SUPPRESS)  # the checkout measured (child)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-count", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, args.tree or str(HERE.parent))
    if args.json:
        print(json.dumps(measure(args, count=not args.no_count)))
        return 0

    ours: dict[str, float] = {}
    base: dict[str, float] = {}
    for round in range(max(1, args.rounds)):
        # alternating, so that both see the machine's other load alike; the bytecodes and
        # calls are the same in every round (counted in the first)
        results = [(ours, measure(args, count=round == 0))]
        if args.baseline:
            results.append((base, _baseline(args, count=round == 0)))
        for best, got in results:
            for case, value in got.items():
                best[case] = min(best.get(case, value), value)

    from bench.measure import Figures, add_host_figures

    def name(case: str) -> tuple[str, str]:
        return _FIGURES.get(case, (f"{case}_cpu_per_event", "µs"))

    fig = Figures("edgecontroller + fleet: CPU per pod watch event (annotation patch)")
    for case in ours:
        fig.add(name(case)[0], ours[case], name(case)[1])
    for case in ours:
        if case in base:
            fig.add(f"baseline_{name(case)[0]}", base[case], name(case)[1])
            fig.ratio(f"{name(case)[0].removesuffix('_per_event')}_ratio", ours[case], base[case])
    fig.add("events_per_run", args.events)
    fig.add("pods", args.pods)
    add_host_figures(fig, os.getloadavg()[0])
    fig.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
