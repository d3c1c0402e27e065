"""A real containerd for tests: ``EDGEBRIDGE_CRI_ENDPOINT`` when set, else one of our own.

``scripts/test.sh`` starts one containerd for the whole run (``scripts/containerd.sh``) and
exports its endpoint; a lone ``pytest tests/edged`` starts its own, once per session, in a
temporary directory, and stops it at the end. Without containerd (or without root, which
runc needs) the tests that use it are skipped, except with ``CI=true``, where that is a
failure: CI must run them.

Tests share the runtime, so each keeps to its own pods: edged only touches what carries its
node's label (:func:`edgecore.cri.labels.managed_selector`), and every test uses a node name
of its own (:func:`unique_node`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "containerd.sh"
ENV = "EDGEBRIDGE_CRI_ENDPOINT"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but no container runtime: {reason}")
    pytest.skip(reason)


def unique_node(prefix: str = "edge") -> str:
    """A node name no other test uses (its pods are its own in the shared runtime)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def cri_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The CRI endpoint (``unix://…``) of a running containerd with busybox and pause images."""
    given = os.environ.get(ENV)
    if given:
        yield given
        return
    if shutil.which("containerd") is None or shutil.which("runc") is None:
        _unavailable("containerd/runc are not installed (scripts/bootstrap.sh installs them)")
    if os.geteuid() != 0:
        _unavailable("containerd needs root")
    # a short path: the socket path must fit in sun_path (108 bytes)
    directory = Path(tmp_path_factory.mktemp("ctd"))
    started = subprocess.run(
        [str(SCRIPT), "start", str(directory)], capture_output=True, text=True, timeout=120
    )
    if started.returncode != 0:
        _unavailable(f"containerd did not start: {started.stderr.strip()[-500:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(SCRIPT), "stop", str(directory)], capture_output=True, timeout=120)
