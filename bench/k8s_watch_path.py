"""Cloud CPU per watch event, socket to follow subscribers: this tree against a baseline tree.

Why: in Kubernetes mode every change reaches cloudhub as one line of a watch stream, and the
path from the socket to the followers (``KubeApi.watch`` -> ``KubeStore.watch`` -> the shared
``follow`` pump) is paid once per change before any subscriber runs (issue 19). This bench
measures that path alone, deterministically: a replay server (a child process, so its CPU is
not counted) streams recorded kube-apiserver v1.20.2 watch lines
(``bench/data/pod_watch_lines.ndjson``: a MODIFIED pod, ~3 KB, as the real server sent it),
each with the next resourceVersion, ``--burst`` events per HTTP chunk and ``--gap`` ms between
chunks; a client child runs ``follow(KubeStore, "pod")`` with no-op subscribers and reports
``time.process_time()`` and event-loop polls over ``--events`` events (after ``--warmup``).

Clients run alternately on this tree and on ``--baseline`` (a directory with the cloudhub
sources to compare against, e.g. an export of ``main``: ``git archive main | tar -x -C DIR``),
``--pairs`` times each; the figures are the medians and their ratio.

``python bench/k8s_watch_path.py --baseline DIR``; ``--burst 10`` for a saturated stream;
``--tls`` to serve over TLS as a real API server does (cloudhub's server certificate and CA).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LINES = Path(__file__).resolve().parent / "data" / "pod_watch_lines.ndjson"
_RV = b'"resourceVersion":"'


# ------------------------------------------------------------------ replay server (child)


def _template() -> tuple[bytes, bytes]:
    """The recorded MODIFIED line cut around its object's resourceVersion value."""
    line = LINES.read_bytes().split(b"\n")[0] + b"\n"
    at = line.index(_RV) + len(_RV)
    end = line.index(b'"', at)
    return line[:at], line[end:]


async def _serve(events: int, burst: int, gap: float, context: ssl.SSLContext | None) -> None:
    head, tail = _template()
    listing = b'{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}'

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                target = request.split(b" ", 2)[1]
                if b"watch=1" not in target:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(listing), listing)
                    )
                    continue
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                rv = 1000
                for _ in range(0, events, burst):
                    payload = b"".join(head + b"%d" % (rv + i) + tail for i in range(burst))
                    rv += burst
                    writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))
                    await writer.drain()
                    await asyncio.sleep(gap)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


# ------------------------------------------------------------------ client (child)


async def _client(kubeconfig: Path, warmup: int, events: int) -> dict[str, Any]:
    # Imported here: the client's cloudhub is whichever tree PYTHONPATH names.
    from cloudhub.store.follow import follow
    from cloudhub.store.kubernetes import KubeStore

    loop = asyncio.get_running_loop()
    selector = loop._selector  # type: ignore[attr-defined]
    select = selector.select
    polls = [0]

    def counted(timeout: float | None = None) -> Any:
        polls[0] += 1
        return select(timeout)

    selector.select = counted
    store = KubeStore.from_config(kubeconfig)
    seen = 0
    mark: dict[str, float] = {}
    done = asyncio.Event()

    async def listed(objects: list[dict[str, Any]]) -> None:
        pass

    async def changed(event: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == warmup:
            mark["cpu"], mark["wall"], mark["polls"] = time.process_time(), time.time(), polls[0]
        elif seen == warmup + events:
            mark["cpu"] = time.process_time() - mark["cpu"]
            mark["wall"] = time.time() - mark["wall"]
            mark["polls"] = polls[0] - mark["polls"]
            done.set()

    task = asyncio.create_task(follow(store, "pod", listed=listed, changed=changed))
    await asyncio.wait_for(done.wait(), timeout=120)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await store.close()
    return {
        "us_per_event": mark["cpu"] / events * 1e6,
        "polls_per_event": mark["polls"] / events,
        "wall_s": mark["wall"],
    }


# ------------------------------------------------------------------ driver


def _run_client(tree: Path, kubeconfig: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, __file__, "--client", str(kubeconfig)]
    cmd += ["--warmup", str(args.warmup), "--events", str(args.events)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)
    if out.returncode != 0:
        raise SystemExit(f"client on {tree} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a tree with the cloudhub to compare to")
    parser.add_argument("--events", type=int, default=3000, help="events measured (3000)")
    parser.add_argument("--warmup", type=int, default=300, help="events before measuring (300)")
    parser.add_argument("--burst", type=int, default=1, help="events per HTTP chunk (1)")
    parser.add_argument("--gap", type=float, default=1.0, help="ms between chunks (1.0)")
    parser.add_argument("--pairs", type=int, default=3, help="baseline/this runs, each (3)")
    parser.add_argument(
        "--tls", action="store_true", help="serve over TLS (cloudhub's certificate)"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--client", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(asyncio.run(_client(args.client, args.warmup, args.events))))
        return 0
    # This tree's bench helpers, for the driver and the server only: the client child must
    # import cloudhub from the tree it measures, so ROOT stays off its path.
    sys.path.insert(0, str(ROOT))
    from bench.common import tls_server

    if args.serve:
        context = tls_server(args.serve)[0] if args.tls else None
        asyncio.run(_serve(args.events + args.warmup, args.burst, args.gap / 1000, context))
        return 0
    total = args.events + args.warmup
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ca = tls_server(directory)[1] if args.tls else None
        serve = [str(directory), "--events", str(total), "--warmup", "0"]
        serve += ["--burst", str(args.burst), "--gap", str(args.gap)]
        serve += ["--tls"] if args.tls else []
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", *serve], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            kubeconfig = directory / "kubeconfig"
            kubeconfig.write_text(_kubeconfig(port, ca))
            trees = [("this", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
            for _ in range(args.pairs):
                for name, tree in reversed(trees):
                    result = _run_client(tree, kubeconfig, args)
                    runs[name].append(result)
                    print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)
        finally:
            server.terminate()
            server.wait()
    tls = ", TLS" if args.tls else ""
    print(f"events: {args.events} (burst {args.burst}, gap {args.gap} ms{tls})")
    medians = {}
    for name, results in runs.items():
        us = statistics.median(r["us_per_event"] for r in results)
        polls = statistics.median(r["polls_per_event"] for r in results)
        medians[name] = us
        print(f"{name}_cpu_per_event: {us:.1f} us")
        print(f"{name}_polls_per_event: {polls:.2f}")
    if "baseline" in medians:
        print(f"ratio_this_to_baseline: {medians['this'] / medians['baseline']:.2f}")
    return 0


def _kubeconfig(port: int, ca: Path | None) -> str:
    cluster: dict[str, str] = {"server": f"http://127.0.0.1:{port}"}
    if ca is not None:
        cluster = {
            "server": f"https://127.0.0.1:{port}",
            "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
        }
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "r", "cluster": cluster}],
            "users": [{"name": "r", "user": {"token": "replay"}}],
            "contexts": [{"name": "r", "context": {"cluster": "r", "user": "r"}}],
            "current-context": "r",
        }
    )


if __name__ == "__main__":
    sys.exit(main())
