"""The labels and log layout edged puts on what it runs; other modules find pods by them.

Sandboxes and containers carry kubelet's labels, so tools that know a kubelet's runtime
(``crictl pods --label io.kubernetes.pod.name=web``) and our own stream relay (logs, exec) find
them the same way:

============================== ============================================ ===============
label                          value                                         on
============================== ============================================ ===============
``io.kubernetes.pod.name``     the pod's ``metadata.name``                   both
``io.kubernetes.pod.namespace`` the pod's namespace                          both
``io.kubernetes.pod.uid``      the pod's ``metadata.uid``                    both
``io.kubernetes.container.name`` the container's name in the spec            containers
``edgebridge.io/managed``      ``"true"``                                    both
``edgebridge.io/node``         the node name of the edgecore that made it    both
============================== ============================================ ===============

``edgebridge.io/node`` lets several edgecores share one runtime (tests, a box running two
nodes) without one removing the other's pods as unknown. Annotations (not labels: values may
be long) carry what re-adoption after a restart needs: ``edgebridge.io/spec-hash`` (the hash of
the container's spec it was made from, so a changed spec replaces it) and
``io.kubernetes.container.restartCount``.

Logs are in kubelet's layout: a sandbox's ``log_directory`` is
``<pod_log_dir>/<namespace>_<name>_<uid>`` and a container's ``log_path`` (relative to it) is
``<container>/<restartCount>.log``, in the CRI log format (``TIMESTAMP STREAM TAG LINE``).
"""

from __future__ import annotations

from pathlib import Path

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
MANAGED = "edgebridge.io/managed"
NODE = "edgebridge.io/node"

#: annotations
SPEC_HASH = "edgebridge.io/spec-hash"
RESTART_COUNT = "io.kubernetes.container.restartCount"
TERMINATION_GRACE = "io.kubernetes.pod.terminationGracePeriod"


def managed_selector(node_name: str) -> dict[str, str]:
    """The label selector of everything edged of ``node_name`` runs."""
    return {MANAGED: "true", NODE: node_name}


def pod_selector(namespace: str, name: str) -> dict[str, str]:
    """The label selector of one pod's sandboxes and containers (any node)."""
    return {MANAGED: "true", POD_NAMESPACE: namespace, POD_NAME: name}


def sandbox_labels(node_name: str, namespace: str, name: str, uid: str) -> dict[str, str]:
    return {
        POD_NAME: name,
        POD_NAMESPACE: namespace,
        POD_UID: uid,
        MANAGED: "true",
        NODE: node_name,
    }


def container_labels(
    node_name: str, namespace: str, name: str, uid: str, container: str
) -> dict[str, str]:
    return {**sandbox_labels(node_name, namespace, name, uid), CONTAINER_NAME: container}


def pod_log_directory(pod_log_dir: Path, namespace: str, name: str, uid: str) -> Path:
    """``<pod_log_dir>/<ns>_<name>_<uid>``, as kubelet lays it out."""
    return pod_log_dir / f"{namespace}_{name}_{uid}"


def container_log_path(container: str, restart_count: int) -> str:
    """``<container>/<restartCount>.log``, relative to the sandbox's log directory."""
    return f"{container}/{restart_count}.log"
