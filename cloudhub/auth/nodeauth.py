"""Node authorization for edge writes: may this node write this resource? Pure.

KubeEdge ships its node authorizer off (and log-only when on), so any node may write any
node's status. Here the rule is fixed and small, and a refusal is an error, never a log line:

- its own Node (``null/node/{node}``, ``null/nodestatus/{node}``) and Lease
  (``kube-node-lease/lease/{node}``);
- the status of pods bound to it (``{ns}/pod/{name}``, ``{ns}/podstatus/{name}``,
  ``{ns}/podpatch/{name}``, with any trailing sub-resource);
- reports about devices bound to it (``{ns}/device/{name}/...``);
- a certificate request for itself (``null/certificatesigningrequest/{node}``).

"Bound" is asked of the caller (``nodes_for(key)``: the nodes an edge key is bound to, as
:meth:`cloudhub.edgecontroller.binding.BindingIndex.nodes_for` answers it), so this module
needs no store and the same function serves every controller.
"""

from __future__ import annotations

from collections.abc import Callable

from wire.errors import Forbidden

#: types a node writes for itself, keyed by name (cluster-scoped or in the lease namespace)
_SELF_TYPES = {"node": "null", "nodestatus": "null", "certificatesigningrequest": "null"}
LEASE_NAMESPACE = "kube-node-lease"
#: edge resource types that stand for a pod's status
_POD_TYPES = frozenset({"pod", "podstatus", "podpatch"})


def check_upstream_write(node: str, resource: str, nodes_for: Callable[[str], set[str]]) -> None:
    """Allow ``node`` to write edge resource ``resource``, or raise.

    Raises:
        Forbidden: the resource is not the node's own, naming both.
    """
    parts = resource.split("/")
    if len(parts) >= 3 and all(parts[:3]):
        ns, typ, name = parts[0], parts[1], parts[2]
        if typ in _SELF_TYPES and ns == _SELF_TYPES[typ] and len(parts) == 3 and name == node:
            return
        if typ == "lease" and ns == LEASE_NAMESPACE and len(parts) == 3 and name == node:
            return
        if typ in _POD_TYPES and node in nodes_for(f"{ns}/pod/{name}"):
            return
        if typ == "device" and len(parts) > 3 and node in nodes_for(f"{ns}/device/{name}"):
            return
    raise Forbidden(f"node {node} may not write {resource}: it is not bound to node {node}")
