"""What cloudhub needs from a cluster, checked once at start-up, before it says "ready".

A cluster that lacks the ``edgebridge`` namespace, the Device CRDs or one of the rights in
``deploy/rbac.yaml`` used to surface only later, as a failed ``edgecore join`` or a watch that
retried forever. Instead cloudhub asks first:

- **the namespace** its ownership Leases and auth Secret live in: a ``dryRun`` create of a
  Lease there (which needs no right beyond the ones checked below) goes through the API
  server's admission, which answers 404 for a namespace that does not exist. cloudhub then
  creates it if a ``SelfSubjectAccessReview`` says it may, else reports it missing;
- **the CRDs**: discovery of ``devices.kubeedge.io/v1beta1`` lists ``devices`` and
  ``devicemodels`` once they are installed;
- **its rights**: one ``SelfSubjectAccessReview`` per verb and resource in :func:`rights`
  (what ``deploy/rbac.yaml`` grants; a test keeps the two in step). The admin rights behind
  ``edgectl apply/delete/twin`` are optional (the binding may be left out): missing ones are
  a warning.

Everything missing is reported in one line naming the ``kubectl apply -f deploy/...`` that
fixes it (:class:`~wire.errors.ConfigError`; ``cloudhub serve`` exits 1 with it).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from cloudhub.auth.kube_ledger import DEFAULT_SECRET as AUTH_SECRET
from cloudhub.k8s.api import DEVICEMODELS, DEVICES, LEASES, KubeApi, Resource
from cloudhub.k8s.nodelease import NODE_LEASE_NAMESPACE
from wire.errors import ConfigError, Conflict, NotFound, StoreError

log = logging.getLogger(__name__)

#: the Lease a dry-run create names to probe the namespace (never stored)
PROBE_NAME = "edgebridge-preflight"

FIX_NAMESPACE = "kubectl apply -f deploy/namespace.yaml"
FIX_CRDS = "kubectl apply -f deploy/crds/"
FIX_RBAC = "kubectl apply -f deploy/rbac.yaml"


@dataclass(frozen=True, slots=True)
class Right:
    """One verb on one resource that cloudhub uses."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    #: the namespace it is needed in; "" for cluster scope (all namespaces)
    namespace: str = ""
    #: one object's name, when the right is limited to it
    name: str = ""
    #: cloudhub cannot run without it (else only ``edgectl apply/delete/twin`` need it)
    required: bool = True

    def describe(self) -> str:
        """``update secrets edgebridge-auth in edgebridge``, ``get nodes/status``-style text
        (as ``kubectl auth can-i`` names them)."""
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        if self.subresource:
            what += f"/{self.subresource}"
        if self.name:
            what += f" {self.name}"
        return f"{self.verb} {what}" + (f" in {self.namespace}" if self.namespace else "")

    def review(self) -> dict[str, object]:
        """The ``SelfSubjectAccessReview`` that asks for this right."""
        attrs: dict[str, str] = {"verb": self.verb, "group": self.group}
        attrs["resource"] = self.resource
        if self.subresource:
            attrs["subresource"] = self.subresource
        if self.namespace:
            attrs["namespace"] = self.namespace
        if self.name:
            attrs["name"] = self.name
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }


def _each(
    verbs: str,
    group: str,
    resources: str,
    *,
    sub: str = "",
    namespace: str = "",
    name: str = "",
    required: bool = True,
) -> list[Right]:
    """One Right per verb and resource (space-separated lists)."""
    return [
        Right(verb, group, res, sub, namespace, name, required)
        for res in resources.split()
        for verb in verbs.split()
    ]


def rights(namespace: str) -> tuple[Right, ...]:
    """What cloudhub uses, as ``deploy/rbac.yaml`` grants it (ownership in ``namespace``)."""
    dev = DEVICES.group
    return (
        # mirroring (ClusterRole edgebridge-cloudhub)
        *_each("get list watch", "", "pods configmaps secrets nodes"),
        *_each("create patch update", "", "nodes"),
        *_each("get patch update", "", "nodes", sub="status"),
        *_each("delete", "", "pods"),
        *_each("get patch update", "", "pods", sub="status"),
        *_each("get list watch", dev, "devices devicemodels"),
        *_each("get patch update", dev, "devices", sub="status"),
        # node heartbeats (Role in kube-node-lease)
        *_each(
            "create get update patch delete",
            LEASES.group,
            "leases",
            namespace=NODE_LEASE_NAMESPACE,
        ),
        # ownership and the auth ledger (Role in the edgebridge namespace)
        *_each("create get list update patch delete", LEASES.group, "leases", namespace=namespace),
        *_each("get update", "", "secrets", namespace=namespace, name=AUTH_SECRET),
        *_each("create", "", "secrets", namespace=namespace),
        # stock edges' acked records (optional: without them a stock edge resyncs in full)
        *_each("create get update delete", "", "configmaps", namespace=namespace, required=False),
        # edgectl apply/delete/twin (ClusterRole edgebridge-cloudhub-admin, optional)
        *_each("create update delete", "", "pods configmaps secrets", required=False),
        *_each("delete", "", "nodes", required=False),
        *_each("create update delete", dev, "devices devicemodels", required=False),
    )


@dataclass(frozen=True, slots=True)
class Findings:
    """What the checks found; :meth:`problem` is the one line for the operator."""

    namespace: str
    namespace_missing: bool = False
    missing_crds: tuple[str, ...] = ()
    missing_rights: tuple[Right, ...] = ()

    @property
    def missing_required(self) -> tuple[Right, ...]:
        return tuple(r for r in self.missing_rights if r.required)

    @property
    def missing_optional(self) -> tuple[Right, ...]:
        return tuple(r for r in self.missing_rights if not r.required)

    def problem(self) -> str | None:
        """One line naming everything missing and the kubectl apply that fixes each; None
        when cloudhub can run."""
        parts: list[str] = []
        if self.namespace_missing:
            parts.append(
                f"namespace {self.namespace} does not exist and cloudhub may not create it "
                f"({FIX_NAMESPACE})"
            )
        if self.missing_crds:
            parts.append(f"CRDs not installed: {', '.join(self.missing_crds)} ({FIX_CRDS})")
        required = self.missing_required
        if required:
            shown = ", ".join(r.describe() for r in required[:6])
            more = f" and {len(required) - 6} more" if len(required) > 6 else ""
            parts.append(
                f"missing rights: {shown}{more} ({FIX_RBAC}; it binds them to the "
                f"ServiceAccount {self.namespace}/cloudhub, bind the same roles to the "
                "kubeconfig's user when running outside the cluster)"
            )
        if not parts:
            return None
        return "the cluster is not ready for cloudhub: " + "; ".join(parts)


async def check_cluster(api: KubeApi, *, namespace: str) -> Findings:
    """Check (and create the namespace if allowed); log what is optional.

    Raises:
        ConfigError: something required is missing (one line, see :meth:`Findings.problem`).
        StoreError: the API failed while asking.
    """
    granted = await asyncio.gather(*(_allowed(api, r) for r in rights(namespace)))
    missing = tuple(r for r, ok in zip(rights(namespace), granted, strict=True) if not ok)
    findings = Findings(
        namespace,
        namespace_missing=not await _ensure_namespace(api, namespace),
        missing_crds=await _missing_crds(api),
        missing_rights=missing,
    )
    problem = findings.problem()
    if problem is not None:
        raise ConfigError(problem)
    optional = findings.missing_optional
    if optional:
        log.warning(
            "edgectl apply/delete/twin will be refused: no right to %s (%s adds them)",
            ", ".join(r.describe() for r in optional),
            FIX_RBAC,
        )
    log.info("cluster checked: namespace %s, CRDs and rights in place", namespace)
    return findings


async def _allowed(api: KubeApi, right: Right) -> bool:
    answer = await api.request(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        body=right.review(),
        what=f"review the right to {right.describe()}",
    )
    return bool((answer.get("status") or {}).get("allowed"))


async def _ensure_namespace(api: KubeApi, namespace: str) -> bool:
    """Whether ``namespace`` exists (created now if it did not and we may)."""
    if await _namespace_exists(api, namespace):
        return True
    may = await _allowed(api, Right("create", "", "namespaces"))
    if not may:
        return False
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {"app.kubernetes.io/part-of": "edgebridge"}},
    }
    try:
        await api.request("POST", "/api/v1/namespaces", body=body, what=f"create {namespace}")
    except Conflict:
        return True  # another replica created it meanwhile
    log.info("created namespace %s (it did not exist)", namespace)
    return True


async def _namespace_exists(api: KubeApi, namespace: str) -> bool:
    probe = {
        "apiVersion": LEASES.api_version,
        "kind": LEASES.kind,
        "metadata": {"name": PROBE_NAME, "namespace": namespace},
        "spec": {},
    }
    try:
        await api.create(LEASES, namespace, probe, dry_run=True)
    except NotFound:
        return False  # admission: namespaces "X" not found
    except Conflict:
        return True  # a Lease of that name exists there: so does the namespace
    except StoreError as exc:
        if "(HTTP 403)" in str(exc):
            return True  # the rights check reports that; existence cannot be told
        raise
    return True


async def _missing_crds(api: KubeApi) -> tuple[str, ...]:
    wanted = {r.plural: f"{r.plural}.{r.group}" for r in (DEVICES, DEVICEMODELS)}
    try:
        found = await api.request(
            "GET", _group_path(DEVICES), what=f"discover {DEVICES.api_version}"
        )
    except NotFound:
        return tuple(wanted.values())
    served = {str(r.get("name")) for r in found.get("resources") or [] if isinstance(r, dict)}
    return tuple(name for plural, name in wanted.items() if plural not in served)


def _group_path(res: Resource) -> str:
    return f"/apis/{res.group}/{res.version}"
