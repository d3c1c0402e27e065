"""Kubernetes mode: the Node names cloudhub as its kubelet, so ``kubectl logs/exec`` work.

The API server reaches a node's kubelet at the node's preferred address (by default it tries
``Hostname``, ``InternalDNS``, ``InternalIP``, ... in that order) and the port in
``status.daemonEndpoints.kubeletEndpoint.Port``. KubeEdge points that at the edge's own
address and redirects the traffic to cloudstream with iptables on the cloud host; edgebridge
writes cloudhub's reachable address and HTTPS port there instead (as virtual-kubelet does),
so nothing but the Node object is involved. The edge's own addresses stay on the Node as
``ExternalIP`` entries, where ``kubectl get nodes -o wide`` still shows them.

Pure: :func:`advertise_kubelet` rewrites the status an edge reported.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class KubeletEndpoint:
    """Where the API server reaches cloudhub's kubelet-shaped endpoints."""

    address: str
    port: int


def advertise_kubelet(status: dict[str, Any], endpoint: KubeletEndpoint) -> dict[str, Any]:
    """A copy of an edge's reported Node ``status`` whose kubelet is cloudhub's endpoint.

    ``addresses`` becomes cloudhub's address (``InternalIP`` and ``Hostname``, so the API
    server picks it whatever its preference order), then the edge's own IPs as
    ``ExternalIP``; ``daemonEndpoints.kubeletEndpoint.Port`` is cloudhub's port.
    """
    out = copy.deepcopy(status)
    edge_ips: list[str] = []
    for entry in status.get("addresses") or []:
        if not isinstance(entry, dict):
            continue
        address = entry.get("address")
        if (
            isinstance(address, str)
            and entry.get("type") in ("InternalIP", "ExternalIP")
            and address != endpoint.address
            and address not in edge_ips
        ):
            edge_ips.append(address)
    out["addresses"] = [
        {"type": "InternalIP", "address": endpoint.address},
        {"type": "Hostname", "address": endpoint.address},
        *({"type": "ExternalIP", "address": ip} for ip in edge_ips),
    ]
    out["daemonEndpoints"] = {"kubeletEndpoint": {"Port": endpoint.port}}
    return out
