"""Fixtures that start the real processes. Their logs are attached to failing tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

from tests.support.containerd import cri_endpoint
from tests.support.pods import cleanup_in_subprocess
from tests.support.procs import Cloud, Edge, KubeApi, MakeEdge, Proc

__all__ = ["cri_endpoint"]

_started: list[Proc] = []


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    c = Cloud(tmp_path)
    _started.append(c.proc)
    await c.start()
    yield c
    c.proc.stop()


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[KubeApi]:
    """The Kubernetes API server emulator process, with edgebridge's CRDs."""
    k = KubeApi(tmp_path)
    _started.append(k.proc)
    await k.start()
    yield k
    k.proc.stop()


@pytest.fixture
def make_edge(tmp_path: Path) -> Iterator[MakeEdge]:
    made: list[Edge] = []

    def factory(name: str = "edge-1", **kw: Any) -> Edge:
        e = Edge(tmp_path, name, **kw)
        made.append(e)
        _started.append(e.proc)
        return e

    yield factory
    for e in made:
        e.proc.stop()
        if e.runtime_endpoint:  # the pods it ran leave the shared runtime with it
            cleanup_in_subprocess(e.runtime_endpoint, e.name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for proc in _started:
            report.sections.append((f"log of {proc.name}", proc.text()[-6000:]))
    if report.when == "teardown":
        _started.clear()
