"""Labels cloudhub writes on objects and selects objects by: each defined here once.

``app.kubernetes.io/managed-by: edgebridge-cloudhub`` marks a ConfigMap or Secret as cloudhub's
own bookkeeping (a stock edge's acked record, :mod:`cloudhub.k8s.acked`; the auth ledger,
:mod:`cloudhub.auth.kube_ledger`). The Kubernetes store lists and watches ConfigMaps and Secrets
with :data:`NOT_MANAGED_BY_CLOUDHUB`
(:mod:`cloudhub.store.kube_kinds`), so the API server neither sends cloudhub its own writes
back as watch events nor does cloudhub mirror them to edges.
"""

from __future__ import annotations

from typing import Final

#: the label every edge Node carries (KubeEdge's convention); edge Nodes are selected by it
EDGE_ROLE_LABEL: Final = "node-role.kubernetes.io/edge"

#: Kubernetes' recommended label for the tool that manages an object
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
#: its value on the ConfigMaps and Secrets cloudhub keeps its own state in
MANAGED_BY_CLOUDHUB: Final = "edgebridge-cloudhub"
#: label selector of every ConfigMap or Secret but those. ``!=`` also matches objects without
#: the label (and a Helm chart's ``managed-by: Helm``), as Kubernetes defines it.
NOT_MANAGED_BY_CLOUDHUB: Final = f"{MANAGED_BY_LABEL}!={MANAGED_BY_CLOUDHUB}"
