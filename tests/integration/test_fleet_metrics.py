"""``/metrics`` on cloudhub (admin token) and on the edge local API; the Grafana dashboard in
``deploy/`` uses only metric names they expose."""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.procs import Cloud, Edge, MakeEdge, wait_until

pytestmark = pytest.mark.timeout(90)

DASHBOARD = Path(__file__).parents[2] / "deploy" / "monitoring" / "grafana-dashboard.json"
_NAME = re.compile(r"\b((?:edgebridge|process)_[a-z_]+)\b")
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def _get(url: str, token: str | None = None, ca: Path | None = None) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(text: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def _value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


async def test_metrics_on_both_sides_cover_the_dashboard(cloud: Cloud, make_edge: MakeEdge) -> None:
    """Cloud metrics need the token and count the edge; the edge serves its own; every name
    the dashboard queries is exposed by one of them."""
    edge: Edge = make_edge("edge-1", heartbeat=2.0)  # no flapping on a loaded box
    edge.join(cloud)
    await edge.start()
    await wait_until(lambda: cloud.node_ready("edge-1"), timeout=20)
    url = f"https://127.0.0.1:{cloud.https_port}/metrics"
    ca = cloud.dir / "ca.crt"
    token = (cloud.dir / "admin.token").read_text().strip()
    assert _get(url, None, ca)[0] == 401
    assert _get(url, "wrong", ca)[0] == 401

    def scraped() -> str | None:
        status, text = _get(url, token, ca)
        assert status == 200, text
        connected = _value(_samples(text), "edgebridge_cloud_connected_edges")
        return text if connected == 1 else None

    cloud_text = await wait_until(scraped, timeout=20)
    cloud_samples = _samples(cloud_text)
    assert _value(cloud_samples, "edgebridge_cloud_frames_total", direction="in") > 0
    assert _value(cloud_samples, "edgebridge_cloud_links_opened_total") >= 1
    assert _value(cloud_samples, "edgebridge_cloud_nodes") == 1
    assert _value(cloud_samples, "process_resident_memory_bytes") > 0
    assert not any("edge-1" in str(s.labels) for v in cloud_samples.values() for s in v)

    def edge_scraped() -> str | None:
        status, text = _get(f"http://127.0.0.1:{edge.api_port}/metrics")
        assert status == 200, text
        samples = _samples(text)
        up = _value(samples, "edgebridge_edge_cloud_connected")
        return text if up == 1 and _value(samples, "edgebridge_edge_mosquitto_up") == 1 else None

    text = await wait_until(edge_scraped, timeout=20)
    edge_samples = _samples(text)
    assert _value(edge_samples, "process_open_fds") > 0

    exposed = {_base(f.name) for f in text_string_to_metric_families(cloud_text + text)}
    queried = {
        _base(name)
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel["targets"]
        for name in _NAME.findall(target["expr"])
    }
    assert queried, "the dashboard queries nothing"
    assert queried <= exposed, f"not exposed: {sorted(queried - exposed)}"
