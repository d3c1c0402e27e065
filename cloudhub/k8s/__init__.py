"""cloudhub's Kubernetes side: the API connection, ownership leases, node heartbeats.

The API connection is :mod:`cloudhub.k8s.api` (aiohttp), a watch stream's lines
:mod:`cloudhub.k8s.watchlines`; only :mod:`cloudhub.k8s.kubeconfig`
imports the ``kubernetes`` package, and only for kubeconfigs it alone reads (exec plugins).
This package's ``__init__`` imports nothing heavy, so :func:`cluster_requested` can decide
whether to load any of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def cluster_requested(kubeconfig: Path | None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether cloudhub should use a cluster: ``--kubeconfig``, ``$KUBECONFIG``, or in a pod.

    Inside a pod Kubernetes sets ``KUBERNETES_SERVICE_HOST``; that is how the Deployment in
    ``deploy/`` runs ``cloudhub serve`` without a kubeconfig.
    """
    env = os.environ if environ is None else environ
    return (
        kubeconfig is not None
        or bool(env.get("KUBECONFIG"))
        or bool(env.get("KUBERNETES_SERVICE_HOST"))
    )
