"""The soak's short run: faults of every kind, then nothing lost, nothing reverted, converged."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


def test_short_soak_loses_nothing(tmp_path: Path) -> None:
    """3 edges, 15 s of kill -9s, cuts and blackholes: lost 0, reverts 0, every edge converged."""
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "bench" / "soak.py"),
            "--edges", "3", "--duration", "15", "--fault-interval", "2", "--seed", "2",
            "--converge-timeout", "30", "--workdir", str(tmp_path), "--timeout", "100",
        ],
        capture_output=True, text=True, timeout=110, cwd=ROOT,
    )  # fmt: skip
    figures = dict(re.findall(r"^(\w+): (\S+)", done.stdout, re.M))
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert int(figures["faults_injected"]) >= 2
    assert int(figures["reports_accepted"]) > 0
    assert figures["lost"] == "0" and figures["reverts"] == "0"
    assert figures["converged"] == "yes" and figures["rss_grew"] == "no"
