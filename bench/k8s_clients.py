"""Our Kubernetes facade against ``kubernetes_asyncio`` on the mirror's workload (issue 14 §3).

Why: cloudhub talks to the API server through :mod:`cloudhub.k8s.api`, a thin dict-in,
dict-out layer on aiohttp. ``kubernetes_asyncio`` offers the same on aiohttp with generated
models; issue 14 asks to switch to it if it is not slower. This bench answers that on a real
kube-apiserver, with the calls cloudhub makes: list, watch, apply (create; get + replace),
merge patches, status writes, deletes.

Each run is one child process per client mode (``bench/k8s_client_modes.py``: ``facade``,
``k8sa-typed``, ``k8sa-raw``), started from this script in the same process tree, the modes
alternating over ``--rounds`` (the starting mode rotates). A child first imports its client
(import time and resident memory it adds, from a bare interpreter), then, in its own
namespace, with one watch open across all phases (label selector, as the store's):

1. create ``--pods`` (100) pods, ``--concurrency`` (8, cloudhub's default) in flight on as
   many connections (every mode gets the same cap; the watch has its own connection);
2. ``--lists`` (20) lists of them;
3. apply: get + replace of every pod (an annotation changed);
4. ``--patches`` (500) merge patches of an annotation carrying a sequence number; the time
   from sending the patch to that number arriving on the watch is the mirror latency;
5. ``--patches`` status merge patches (a condition);
6. delete every pod (grace period 0).

Per mode (median over rounds): CPU of the child per operation, per phase and overall (watch
events it decoded meanwhile included), call latency p50/p99, watch latency p50/p99, RSS at
the end, import time and memory; and each ``kubernetes_asyncio`` figure as a ratio to the
facade's.

``python bench/k8s_clients.py --help``; ``--quick`` finishes in about a minute. Needs the
cluster named by ``--kubeconfig`` (``/tmp/hk8s-realk8s/realk8s/up.sh``); the ``k8sa-*`` modes
need ``pip install kubernetes_asyncio`` (the ``test`` extra) and are skipped with a line
saying so when it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

log = logging.getLogger(__name__)

SCRIPT = Path(__file__).resolve()
DEFAULT_KUBECONFIG = Path("/tmp/hk8s-realk8s/realk8s/kubeconfig")
RUN_LABEL = "bench.edgebridge.io/clients"
SEQ_ANNOTATION = "bench.edgebridge.io/seq"
PHASES = ("create", "list", "apply", "patch", "status", "delete")
#: what each mode imports for its client (measured in a fresh interpreter)
CLIENT_IMPORTS = {
    "facade": ("cloudhub.k8s.api",),
    "k8sa-typed": (
        "kubernetes_asyncio.client",
        "kubernetes_asyncio.config",
        "kubernetes_asyncio.watch",
    ),
    "k8sa-raw": ("kubernetes_asyncio.client", "kubernetes_asyncio.config"),
}


def _rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))]


def pod_manifest(ns: str, name: str) -> dict[str, Any]:
    """An unscheduled pod (no scheduler or kubelet will touch it)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {RUN_LABEL: ns}},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep"]}]},
    }


# -- the child: one client, one namespace -------------------------------------------------------


async def _workload(args: argparse.Namespace) -> dict[str, Any]:
    from bench.k8s_client_modes import connect

    ns: str = args.namespace
    selector = f"{RUN_LABEL}={ns}"
    names = [f"p{i:04d}" for i in range(args.pods)]
    client = await connect(args.child, args.kubeconfig, connections=args.concurrency)
    latencies: dict[str, list[float]] = {p: [] for p in PHASES}
    #: seq -> when its patch was answered / seen on the watch
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    all_seen = asyncio.Event()
    events = 0
    slots = asyncio.Semaphore(args.concurrency)

    async def timed(phase: str, call: Callable[[], Awaitable[Any]]) -> Any:
        async with slots:
            started = time.perf_counter()
            result = await call()
            latencies[phase].append(time.perf_counter() - started)
            return result

    async def watcher(rv: str) -> None:
        nonlocal events
        async for _type, obj in client.watch(selector, rv):
            events += 1
            seq = ((obj.get("metadata") or {}).get("annotations") or {}).get(SEQ_ANNOTATION)
            if seq is not None:
                seen.setdefault(int(seq), time.perf_counter())
                if len(seen) >= args.patches:
                    all_seen.set()

    async def apply_one(name: str) -> None:
        obj = await client.get(ns, name)
        obj["metadata"].setdefault("annotations", {})["bench.edgebridge.io/applied"] = "1"
        await client.replace(ns, name, obj)

    async def patch_one(seq: int) -> None:
        name = names[seq % len(names)]
        sent[seq] = time.perf_counter()
        await client.patch(ns, name, {"metadata": {"annotations": {SEQ_ANNOTATION: str(seq)}}})

    def status_patch(i: int) -> dict[str, Any]:
        condition = {"type": "Ready", "status": "True" if i % 2 else "False", "reason": f"r{i}"}
        return {"status": {"conditions": [condition]}}

    _items, rv = await client.list(selector)
    watch_task = asyncio.create_task(watcher(rv))
    phases: dict[str, dict[str, float]] = {}
    try:
        #: the calls of each phase, made when the phase starts
        work: dict[str, list[Callable[[], Awaitable[Any]]]] = {
            "create": [partial(client.create, ns, pod_manifest(ns, n)) for n in names],
            "list": [partial(client.list, selector) for _ in range(args.lists)],
            "apply": [partial(apply_one, n) for n in names],
            "patch": [partial(patch_one, i) for i in range(args.patches)],
            "status": [
                partial(client.patch, ns, names[i % len(names)], status_patch(i), status=True)
                for i in range(args.patches)
            ],
            "delete": [partial(client.delete, ns, n) for n in names],
        }
        for phase in PHASES:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(timed(phase, c) for c in work[phase]))
            if phase == "patch":  # until the watch has delivered every patch (or 30 s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(all_seen.wait(), 30)
            phases[phase] = {
                "ops": len(work[phase]),
                "cpu_s": time.process_time() - cpu0,
                "wall_s": time.perf_counter() - wall0,
                "p50_ms": _pct(latencies[phase], 0.5) * 1000,
                "p99_ms": _pct(latencies[phase], 0.99) * 1000,
            }
    finally:
        watch_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch_task
        await client.close()
    mirror = [seen[s] - sent[s] for s in sent if s in seen]
    return {
        "phases": phases,
        "events": events,
        "delivered": len(mirror),
        "watch_p50_ms": _pct(mirror, 0.5) * 1000,
        "watch_p99_ms": _pct(mirror, 0.99) * 1000,
        "all_p50_ms": _pct([x for v in latencies.values() for x in v], 0.5) * 1000,
        "all_p99_ms": _pct([x for v in latencies.values() for x in v], 0.99) * 1000,
    }


def child_main(args: argparse.Namespace) -> int:
    """Import the client (measured), run the workload, print one JSON object."""
    rss0, t0 = _rss_mib(), time.perf_counter()
    try:
        for module in CLIENT_IMPORTS[args.child]:
            __import__(module)
    except ImportError as exc:
        print(json.dumps({"error": f"{args.child}: {exc}"}))
        return 2
    result: dict[str, Any] = {
        "import_ms": (time.perf_counter() - t0) * 1000,
        "import_mib": _rss_mib() - rss0,
    }
    result.update(asyncio.run(_workload(args)))
    result["rss_mib"] = _rss_mib()
    result["hwm_mib"] = _rss_mib("VmHWM")
    print(json.dumps(result))
    return 0


# -- the parent: alternate the modes, aggregate -------------------------------------------------


async def _run_child(args: argparse.Namespace, mode: str, ns: str) -> dict[str, Any]:
    from cloudhub.k8s.api import KubeApi, Resource

    namespaces = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
    api = KubeApi.from_config(args.kubeconfig)
    try:
        await api.create(
            namespaces, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
        argv = [
            sys.executable,
            str(SCRIPT),
            "--child",
            mode,
            "--namespace",
            ns,
            "--kubeconfig",
            str(args.kubeconfig),
            "--pods",
            str(args.pods),
            "--lists",
            str(args.lists),
            "--patches",
            str(args.patches),
            "--concurrency",
            str(args.concurrency),
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        lines = out.decode().strip().splitlines()
        if proc.returncode not in (0, 2) or not lines:
            raise RuntimeError(f"{mode} child failed ({proc.returncode}): {err.decode()[-800:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result
    finally:
        with contextlib.suppress(Exception):
            await api.delete(namespaces, None, ns)
        await api.close()


def _flatten(result: dict[str, Any]) -> dict[str, float]:
    flat = {k: float(v) for k, v in result.items() if isinstance(v, int | float)}
    ops = cpu = 0.0
    for phase, p in result["phases"].items():
        flat[f"cpu_us_{phase}"] = p["cpu_s"] / p["ops"] * 1e6
        flat[f"p50_ms_{phase}"] = p["p50_ms"]
        ops += p["ops"]
        cpu += p["cpu_s"]
    flat["cpu_us_per_op"] = cpu / ops * 1e6
    return flat


async def parent(args: argparse.Namespace, fig: Any) -> bool:
    modes = list(args.modes)
    if (
        any(m.startswith("k8sa") for m in modes)
        and importlib.util.find_spec("kubernetes_asyncio") is None
    ):
        print(
            "kubernetes_asyncio is not installed (pip install kubernetes_asyncio): "
            "measuring the facade alone",
            file=sys.stderr,
        )
        modes = [m for m in modes if not m.startswith("k8sa")]
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for r in range(args.rounds):
        order = modes[r % len(modes) :] + modes[: r % len(modes)]
        for mode in order:
            ns = f"{args.prefix}-{os.getpid()}-{r}-{mode}"
            result = await _run_child(args, mode, ns)
            if "error" in result:
                print(f"skipped {result['error']}", file=sys.stderr)
                modes.remove(mode)
                continue
            flat = _flatten(result)
            runs[mode].append(flat)
            log.info(
                "round %d %s: %.0f µs CPU/op, watch p50 %.1f ms, RSS %.1f MiB",
                r + 1,
                mode,
                flat["cpu_us_per_op"],
                flat["watch_p50_ms"],
                flat["rss_mib"],
            )
    keys = [
        "cpu_us_per_op",
        *(f"cpu_us_{p}" for p in PHASES),
        "all_p50_ms",
        "all_p99_ms",
        "watch_p50_ms",
        "watch_p99_ms",
        "rss_mib",
        "hwm_mib",
        "import_ms",
        "import_mib",
        "delivered",
    ]
    median = {
        m: {k: statistics.median(r[k] for r in runs[m]) for k in keys} for m in runs if runs[m]
    }
    for m, figures in median.items():
        for k in keys:
            fig.add(f"{m}_{k}", figures[k], digits=0 if k == "delivered" else 1)
    base = median.get("facade")
    if base is not None:
        for m in median:
            if m == "facade":
                continue
            for k in (
                "cpu_us_per_op",
                "all_p50_ms",
                "watch_p50_ms",
                "rss_mib",
                "import_ms",
                "import_mib",
            ):
                fig.ratio(f"{m}_vs_facade_{k}", median[m][k], base[k], digits=2)
    return all(r["delivered"] == args.patches for rs in runs.values() for r in rs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="cloudhub's Kubernetes facade vs kubernetes_asyncio (typed, and with "
        "_preload_content=False) on the mirror workload against a real kube-apiserver: CPU "
        "per operation, latency, RSS, import cost, and the ratios.",
        epilog="example: /tmp/hk8s-realk8s/realk8s/up.sh && python bench/k8s_clients.py --quick",
    )
    p.add_argument("--kubeconfig", type=Path, default=DEFAULT_KUBECONFIG, help="the cluster")
    p.add_argument(
        "--modes",
        nargs="+",
        default=["facade", "k8sa-typed", "k8sa-raw"],
        choices=["facade", "k8sa-typed", "k8sa-raw"],
        help="clients (all three)",
    )
    p.add_argument("--rounds", type=int, default=None, help="alternations (3; --quick 1)")
    p.add_argument("--pods", type=int, default=None, help="pods per run (100; --quick 50)")
    p.add_argument("--lists", type=int, default=20, help="lists of them per run (20)")
    p.add_argument("--patches", type=int, default=None, help="patches per run (500; --quick 200)")
    p.add_argument(
        "--concurrency", type=int, default=8, help="calls in flight, connections (8, as cloudhub)"
    )
    p.add_argument("--prefix", default="kc", help="namespace prefix (kc)")
    p.add_argument("--quick", action="store_true", help="1 round, 50 pods, 200 patches")
    p.add_argument("--timeout", type=float, default=900.0, help="hard limit, s (900)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug progress")
    p.add_argument("--child", choices=["facade", "k8sa-typed", "k8sa-raw"], help=argparse.SUPPRESS)
    p.add_argument("--namespace", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.pods = args.pods or (50 if args.quick else 100)
    args.patches = args.patches or (200 if args.quick else 500)
    if min(args.rounds, args.pods, args.lists, args.patches, args.concurrency) < 1:
        p.error("--rounds, --pods, --lists, --patches, --concurrency must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    from bench.common import setup_logging
    from bench.measure import Figures, run_benchmark

    setup_logging(verbose=args.verbose)
    if not args.kubeconfig.exists():
        print(
            f"needs a running cluster: {args.kubeconfig} missing "
            "(start it with /tmp/hk8s-realk8s/realk8s/up.sh)",
            file=sys.stderr,
        )
        return 2
    fig = Figures(
        f"k8s_clients pods={args.pods} lists={args.lists} patches={args.patches} "
        f"concurrency={args.concurrency} rounds={args.rounds} (real kube-apiserver)"
    )
    return run_benchmark(fig, parent(args, fig), timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
