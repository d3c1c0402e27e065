"""Kubernetes mode on a real kube-apiserver: watches that resume instead of re-listing (issue 19).

Why: a watch request ends every ``timeoutSeconds`` (and on any API server restart or network
error); re-listing each time costs the API server a full read of the type and cloudhub a
decode of every object. :mod:`cloudhub.k8s.resume` reopens the stream from the newest
version seen instead, and re-lists only on 410 Gone, from the watch cache. This checks both
against the real thing and prints what a re-list costs either way.

The run, against ``--kubeconfig``'s cluster (shared: everything is named ``--prefix``-...
and deleted at the end):

1. a namespace with ``--objects`` (1,000) ConfigMaps;
2. **resume**: the store's shared list+watch (:func:`cloudhub.store.follow.follow`) of
   ConfigMaps with ``--watch-timeout`` (3) s watch requests, for ``--duration`` (12) s while
   ``--rate`` (20) patches a second carry a sequence number: lists and watch requests made,
   patches seen (each exactly once);
3. **re-list cost**: ``--lists`` (10) lists of the namespace, alternating a consistent read
   and ``resourceVersionMatch=NotOlderThan`` the newest streamed version: the API server's
   CPU (pid from ``--apiserver-pid-file``), etcd's (``--etcd-pid-file``) and the wall time
   per list, and the ratio;
4. **410 Gone**: ``--late-writes`` (50) more patches, then a watch from version 1 (long
   compacted; the API server's watch cache sizes itself to the event rate, so a few hundred
   patches do not expire a recent version): 410, and the store's re-list then asks
   NotOlderThan the newest version its watch streamed, from the watch cache, and holds the
   last patch.

``python bench/k8s_resume.py --help``; about 40 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cluster_is_up, setup_logging, wait_for_condition
from bench.measure import Figures, cpu_seconds, run_benchmark
from cloudhub.k8s.api import CONFIGMAPS, KubeApi, Resource
from cloudhub.k8s.resume import NOT_OLDER_THAN
from cloudhub.store.base import WatchEvent
from cloudhub.store.follow import follow
from cloudhub.store.kubernetes import KubeSettings, KubeStore
from wire.errors import Gone

log = logging.getLogger(__name__)

DEFAULT_KUBECONFIG = Path("/tmp/hk8s-realk8s/realk8s/kubeconfig")
DEFAULT_APISERVER_PID = Path("/tmp/hk8s-realk8s/realk8s/run/kube-apiserver.pid")
DEFAULT_ETCD_PID = Path("/tmp/hk8s-realk8s/realk8s/run/etcd.pid")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SEQ_KEY = "seq"
#: a version long compacted away on any cluster that has run a while: a watch from it gets 410
ANCIENT = "1"


def configmap(ns: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"cm{i:04d}", "namespace": ns},
        "data": {"value": "x" * 200, SEQ_KEY: "-1"},
    }


async def _gather_limited(calls: list[Any], limit: int = 16) -> None:
    slots = asyncio.Semaphore(limit)

    async def one(call: Any) -> None:
        async with slots:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def run(args: argparse.Namespace, fig: Figures) -> bool:
    ns = f"{args.prefix}-{os.getpid()}"
    apiserver = int(args.apiserver_pid_file.read_text().split()[0])
    etcd = int(args.etcd_pid_file.read_text().split()[0]) if args.etcd_pid_file.exists() else 0
    api = KubeApi.from_config(args.kubeconfig)
    store = KubeStore.from_config(
        args.kubeconfig, settings=KubeSettings(watch_timeout=args.watch_timeout)
    )
    ok = True
    try:
        await api.create(
            NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
        await _gather_limited(
            [lambda i=i: api.create(CONFIGMAPS, ns, configmap(ns, i)) for i in range(args.objects)]
        )
        names = [f"cm{i:04d}" for i in range(args.objects)]
        seen: dict[int, int] = {}
        listed_count = 0

        async def listed(objects: list[dict[str, Any]]) -> None:
            nonlocal listed_count
            listed_count += 1

        async def changed(event: WatchEvent) -> None:
            meta = event.object.get("metadata") or {}
            if meta.get("namespace") == ns:
                seq = int((event.object.get("data") or {}).get(SEQ_KEY, "-1"))
                if seq >= 0:
                    seen[seq] = seen.get(seq, 0) + 1

        async def patch(seq: int) -> None:
            await api.patch(CONFIGMAPS, ns, names[seq % len(names)], {"data": {SEQ_KEY: str(seq)}})

        # -- 2. resume
        follower = asyncio.create_task(
            follow(store, "configmap", listed=listed, changed=changed, who="bench")
        )
        await wait_for_condition(lambda: listed_count == 1, timeout=30, what="the first list")
        requests0 = dict(store.api.requests)
        writes = int(args.duration * args.rate)
        started = time.monotonic()
        for seq in range(writes):
            await patch(seq)
            await asyncio.sleep(max(0.0, started + (seq + 1) / args.rate - time.monotonic()))
        await wait_for_condition(lambda: len(seen) >= writes, timeout=30, what="every patch")
        watches = store.api.requests["WATCH"] - requests0.get("WATCH", 0)
        relists = listed_count - 1
        doubled = sum(1 for n in seen.values() if n > 1)
        fig.add("resume_patches", writes)
        fig.add("resume_patches_seen", len(seen))
        fig.add("resume_patches_seen_twice", doubled)
        fig.add("resume_watch_requests", watches, f"(one per {args.watch_timeout} s)")
        fig.add("resume_relists", relists, "(0: every stream end resumed)")
        ok = ok and len(seen) == writes and doubled == 0 and relists == 0 and watches >= 2
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower

        # -- 3. re-list cost: consistent read vs the watch cache
        floor = await _streamed_version(store)
        costs: dict[str, list[tuple[float, float, float]]] = {"consistent": [], "cache": []}
        for i in range(args.lists * 2):
            how = "consistent" if i % 2 == 0 else "cache"
            cpu0, etcd0, t0 = cpu_seconds(apiserver), cpu_seconds(etcd), time.perf_counter()
            data = await api.list(
                CONFIGMAPS,
                namespace=ns,
                resource_version=floor if how == "cache" else "",
                resource_version_match=NOT_OLDER_THAN if how == "cache" else "",
            )
            costs[how].append(
                (
                    cpu_seconds(apiserver) - cpu0,
                    cpu_seconds(etcd) - etcd0 if etcd else math.nan,
                    time.perf_counter() - t0,
                )
            )
            mine = [o for o in data.get("items") or [] if o["metadata"]["name"].startswith("cm")]
            ok = ok and len(mine) == args.objects  # (the namespace has kube-root-ca.crt too)
        for how, rows in costs.items():
            fig.add(f"list_{how}_apiserver_cpu_ms", sum(r[0] for r in rows) / len(rows) * 1000)
            fig.add(f"list_{how}_etcd_cpu_ms", sum(r[1] for r in rows) / len(rows) * 1000)
            fig.add(f"list_{how}_wall_ms", sum(r[2] for r in rows) / len(rows) * 1000)
        fig.ratio(
            "list_cache_vs_consistent_apiserver_cpu",
            fig.value("list_cache_apiserver_cpu_ms"),
            fig.value("list_consistent_apiserver_cpu_ms"),
            digits=2,
        )
        fig.ratio(
            "list_cache_vs_consistent_apiserver_plus_etcd_cpu",
            fig.value("list_cache_apiserver_cpu_ms") + fig.value("list_cache_etcd_cpu_ms"),
            fig.value("list_consistent_apiserver_cpu_ms")
            + fig.value("list_consistent_etcd_cpu_ms"),
            digits=2,
        )

        # -- 4. 410 Gone, then a re-list from the cache that holds the later patches
        last = writes + args.late_writes
        await _gather_limited([lambda s=s: patch(s) for s in range(writes, last)])
        try:
            await asyncio.wait_for(_drain(store.watch("configmap", ANCIENT)), 15)
            gone = False
        except Gone:
            gone = True
        except TimeoutError:
            gone = False
        fig.add("expired_watch_got_410", str(gone))
        t0 = time.perf_counter()
        items, _rv = await store.list("configmap")
        fig.add("relist_after_410_ms", (time.perf_counter() - t0) * 1000)
        mine = [o for o in items if o["metadata"].get("namespace") == ns]
        newest = max(int((o.get("data") or {}).get(SEQ_KEY, "-1")) for o in mine)
        fig.add("relist_after_410_has_newest_patch", str(newest == last - 1))
        ok = ok and gone and newest == last - 1
    finally:
        with contextlib.suppress(Exception):
            await api.delete(NAMESPACES, None, ns)
        await store.close()
        await api.close()
    return ok


async def _drain(stream: AsyncIterator[WatchEvent]) -> None:
    async for _event in stream:
        pass


async def _streamed_version(store: KubeStore) -> str:
    """A version the ConfigMap watch cache has sent (an event's), via a short watch."""
    _items, rv = await store.list("configmap")
    version = ""
    stream = store.api.watch(
        CONFIGMAPS, resource_version=rv, timeout_seconds=1, inactivity_timeout=5
    )
    async with contextlib.aclosing(stream):
        async for raw in stream:
            version = str(((raw.object or {}).get("metadata") or {}).get("resourceVersion", ""))
            break
    return version or rv


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Kubernetes watches on a real kube-apiserver: resumed instead of re-listed, "
        "and what a re-list costs from etcd or from the watch cache.",
        epilog="example: /tmp/hk8s-realk8s/realk8s/up.sh && python bench/k8s_resume.py",
    )
    p.add_argument("--kubeconfig", type=Path, default=DEFAULT_KUBECONFIG, help="the cluster")
    p.add_argument(
        "--apiserver-pid-file", type=Path, default=DEFAULT_APISERVER_PID, help="its pid file"
    )
    p.add_argument("--etcd-pid-file", type=Path, default=DEFAULT_ETCD_PID, help="etcd's (optional)")
    p.add_argument("--prefix", default="kr", help="namespace prefix (kr)")
    p.add_argument("--objects", type=int, default=1000, help="ConfigMaps (1000)")
    p.add_argument("--watch-timeout", type=int, default=3, help="s per watch request (3)")
    p.add_argument("--duration", type=float, default=12.0, help="s of patches (12)")
    p.add_argument("--rate", type=float, default=20.0, help="patches per second (20)")
    p.add_argument("--lists", type=int, default=10, help="lists of each kind (10)")
    p.add_argument("--late-writes", type=int, default=50, help="patches before the 410 (50)")
    p.add_argument("--timeout", type=float, default=300.0, help="hard limit, s (300)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug progress")
    args = p.parse_args(argv)
    if min(args.objects, args.watch_timeout, args.lists, args.late_writes) < 1:
        p.error("--objects, --watch-timeout, --lists, --late-writes must be >= 1")
    if args.duration <= 0 or args.rate <= 0:
        p.error("--duration and --rate must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(verbose=args.verbose)
    if not cluster_is_up(args.kubeconfig, args.apiserver_pid_file):
        return 2
    fig = Figures(
        f"k8s_resume objects={args.objects} watch_timeout={args.watch_timeout}s "
        f"patches={args.duration * args.rate:.0f} (real kube-apiserver)"
    )
    return run_benchmark(fig, run(args, fig), timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
