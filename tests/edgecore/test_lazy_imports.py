"""What a default edge does not use is not imported: gRPC only with a runtime or a DMI mapper,
cryptography only to join or renew, aiohttp only to join and at a pod's first HTTP probe
(each costs a running edge ~10-15 MB; see bench/edge_footprint.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

HEAVY = ("grpc", "cryptography", "google.protobuf", "aiohttp")


def loaded_after(code: str) -> set[str]:
    """Which of HEAVY a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=50, check=True
    )
    return set(out.stdout.split())


def test_edgecore_run_imports_no_grpc_cryptography_or_aiohttp() -> None:
    """``edgecore run``'s modules (cli, app and every module it always starts) load none."""
    assert loaded_after("import edgecore.cli, edgecore.app, edgecore.figures") == set()


def test_metrics_load_prometheus_client_at_the_first_scrape() -> None:
    """``edgecore run`` imports prometheus_client only when ``/metrics`` is first read."""
    code = "import edgecore.cli, edgecore.app, edgecore.figures, sys\n"
    code += "assert 'prometheus_client' not in sys.modules, 'imported at start'"
    loaded_after(code)


def test_runtime_modules_bring_grpc_and_dmi_only_its_rpc_face() -> None:
    """The modules the app imports for ``--runtime cri`` need gRPC; DMI's module does not (it
    loads ``edgecore.dmi.rpc`` when a mapper first connects)."""
    assert "grpc" in loaded_after("import edgecore.edged.module")
    assert "grpc" in loaded_after("import edgecore.edgestream.cri")
    assert loaded_after("import edgecore.dmi.module") == set()
    assert "grpc" in loaded_after("import edgecore.dmi.rpc")


def test_join_and_renewal_bring_cryptography() -> None:
    """Joining and renewing load cryptography when they run."""
    assert "cryptography" in loaded_after("import edgecore.join")
    assert "cryptography" in loaded_after("import edgecore.certmanager.keys")


def test_join_brings_aiohttp_and_edged_only_at_its_first_http_probe() -> None:
    """Joining loads aiohttp; edged (its HTTP probes make their session at the first one)
    and the local API do not."""
    assert "aiohttp" in loaded_after("import edgecore.join")
    assert "aiohttp" not in loaded_after("import edgecore.edged.module")
    assert "aiohttp" not in loaded_after("import edgecore.metaserver.server")
