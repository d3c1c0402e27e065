"""The edge describes itself in NodeStatus terms: capacity, nodeInfo, addresses, os/arch."""

from __future__ import annotations

from pathlib import Path

from edgecore.nodestatus.facts import memory_bytes, node_labels, node_status, os_image


def test_node_status_has_capacity_info_and_addresses() -> None:
    """capacity/allocatable carry cpu, memory and pods; nodeInfo names os, arch and version."""
    status = node_status(cloud_host="127.0.0.1")
    assert set(status["capacity"]) == {"cpu", "memory", "pods"}
    assert int(status["capacity"]["cpu"]) >= 1
    assert status["capacity"]["memory"].endswith("Ki")
    info = status["nodeInfo"]
    assert info["operatingSystem"] == "linux"
    assert info["kubeletVersion"].startswith("edgebridge-edgecore/")
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]


def test_labels_use_kubernetes_arch_names() -> None:
    """Architecture labels use Kubernetes' names (amd64, arm64), not uname's."""
    labels = node_labels()
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] in {"amd64", "arm64", "arm"} or labels["kubernetes.io/arch"]


def test_unreadable_proc_files_degrade_gracefully(tmp_path: Path) -> None:
    """Missing /proc/meminfo or os-release gives 0 or a fallback, not an exception."""
    assert memory_bytes(tmp_path / "nope") == 0
    assert os_image(tmp_path / "nope")
    (tmp_path / "os-release").write_text('NAME="X"\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    assert os_image(tmp_path / "os-release") == "Debian GNU/Linux 12"
