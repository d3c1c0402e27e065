"""This machine's facts, in the shape of a Kubernetes ``NodeStatus`` (pure reads of /proc etc.)."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from pathlib import Path
from typing import Any

#: Kubernetes' names for ``platform.machine()`` values
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm"}
#: what an edge node offers for pods when nothing else says (kubelet's default max-pods)
DEFAULT_MAX_PODS = 110


def version() -> str:
    try:
        return metadata.version("edgebridge")
    except metadata.PackageNotFoundError:
        return "unknown"


def memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def os_image(os_release: Path = Path("/etc/os-release")) -> str:
    try:
        for line in os_release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def local_address(cloud_host: str) -> str | None:
    """The address this node uses to reach the cloud (no packet is sent: UDP connect)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((cloud_host, 9))
            addr: str = s.getsockname()[0]
            return addr
    except OSError:
        return None


def node_status(*, cloud_host: str, max_pods: int = DEFAULT_MAX_PODS) -> dict[str, Any]:
    """``status`` fields edgecore reports: capacity, allocatable, nodeInfo, addresses."""
    capacity = {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{memory_bytes() // 1024}Ki",
        "pods": str(max_pods),
    }
    addresses = [{"type": "Hostname", "address": socket.gethostname()}]
    ip = local_address(cloud_host)
    if ip:
        addresses.insert(0, {"type": "InternalIP", "address": ip})
    uname = platform.uname()
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "addresses": addresses,
        "nodeInfo": {
            "architecture": _ARCH.get(uname.machine, uname.machine),
            "operatingSystem": uname.system.lower(),
            "osImage": os_image(),
            "kernelVersion": uname.release,
            "kubeletVersion": f"edgebridge-edgecore/{version()}",
            "containerRuntimeVersion": "",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kubeProxyVersion": "",
        },
    }


def node_labels() -> dict[str, str]:
    """Labels the cloud puts on this node's Node object (besides its role and hostname)."""
    uname = platform.uname()
    return {
        "kubernetes.io/os": uname.system.lower(),
        "kubernetes.io/arch": _ARCH.get(uname.machine, uname.machine),
    }
