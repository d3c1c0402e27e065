"""The emulator's RBAC and injected failures (:mod:`tests.support.kubeapi`).

:class:`Rbac`: everything is allowed unless a test took a right away with ``deny()``; a denied
request gets 403 Forbidden, and a ``SelfSubjectAccessReview`` is answered from the same rules.
:class:`Injections`: the next matching requests fail with a given status (e.g. a 409 Conflict,
as if someone else wrote first).
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.kubeapi_model import Obj
from tests.support.kubeapi_routes import Target
from tests.support.kubeapi_state import ApiError


@dataclass(slots=True)
class _Injection:
    status: int
    method: str
    path: str | None
    times: int


@dataclass(frozen=True, slots=True)
class _Denial:
    verb: str
    group: str
    #: ``plural`` or ``plural/subresource``
    resource: str
    #: None: in every namespace
    namespace: str | None


class Rbac:
    """The rights taken away so far."""

    def __init__(self) -> None:
        self._denied: set[_Denial] = set()

    def deny(self, verb: str, group: str, resource: str, namespace: str | None) -> None:
        self._denied.add(_Denial(verb, group, resource, namespace))

    def allowed(self, verb: str, group: str, resource: str, namespace: str | None) -> bool:
        """What RBAC answers for one request (``namespace`` None or "": cluster scope)."""
        return not any(
            d.verb in (verb, "*")
            and d.group == group
            and d.resource == resource
            and d.namespace in (None, namespace or None)
            for d in self._denied
        )

    def authorize(self, verb: str, target: Target) -> str:
        """RBAC: raise 403 for a denied request; ``"review"`` for a SelfSubjectAccessReview
        (answered from the same rules), else ``"ok"``."""
        res, ns, _, sub = target
        resource = f"{res.plural}/{sub}" if sub else res.plural
        if not self.allowed(verb, res.group, resource, ns):
            raise ApiError(
                403,
                "Forbidden",
                f'{res.plural} is forbidden: User "emulator" cannot {verb} resource '
                f'"{resource}" in API group "{res.group}"'
                + (f' in the namespace "{ns}"' if ns else " at the cluster scope"),
            )
        if res.plural == "selfsubjectaccessreviews" and verb == "create":
            return "review"
        return "ok"

    def review(self, body: Obj) -> Obj:
        """A SelfSubjectAccessReview answered from the :meth:`deny` list."""
        attrs = (body.get("spec") or {}).get("resourceAttributes") or {}
        resource = str(attrs.get("resource") or "")
        if attrs.get("subresource"):
            resource += f"/{attrs['subresource']}"
        allowed = self.allowed(
            str(attrs.get("verb") or ""),
            str(attrs.get("group") or ""),
            resource,
            attrs.get("namespace") or None,
        )
        status: Obj = {"allowed": allowed}
        if not allowed:
            status["reason"] = "denied by the emulator's deny()"
        return {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": body.get("spec") or {},
            "status": status,
        }


class Injections:
    """Failures waiting for their requests."""

    def __init__(self) -> None:
        self._pending: list[_Injection] = []

    def add(self, status: int, method: str, path: str | None, times: int) -> None:
        self._pending.append(_Injection(status, method, path, times))

    def clear(self) -> None:
        self._pending.clear()

    def check(self, method: str, path: str) -> None:
        """Raise the failure injected for this request, if any."""
        for inj in self._pending:
            if inj.method == method and inj.path in (None, path) and inj.times > 0:
                inj.times -= 1
                if inj.status == 409:
                    raise ApiError(409, "Conflict", "the object has been modified (injected)")
                raise ApiError(inj.status, "InternalError", f"injected failure {inj.status}")
