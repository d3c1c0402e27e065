"""The one place node certificates are issued: join and renewal alike.

Every certificate is recorded in the ledger *before* it is handed out, so "revoke everything
node X holds" is complete: there is no certificate cloudhub signed that the ledger does not
know. Join tokens that admit a limited number of joins are counted here too.

Renewals (a node authenticated by its current certificate asks for a new one, over its link or
over ``/edge.crt`` as stock KubeEdge edgecores do) are limited to one per node per
:attr:`CertIssuer.min_renew_interval`, so a compromised node cannot fill the ledger.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cloudhub.auth.ledger import AuthLedger, IssuedRecord
from cloudhub.auth.revocation import Revocations
from cloudhub.pki import DEFAULT_NODE_VALIDITY, Authority, NodeCert
from wire.errors import AuthError, TokenError

log = logging.getLogger(__name__)

#: the longest a node must wait between two renewals, whatever the validity
MAX_RENEW_INTERVAL = 3600.0


class Revoker(Protocol):
    """What the admin API needs to revoke a deleted node."""

    async def revoke_node(self, node: str) -> int: ...


class CertIssuer:
    """Signs node certificates for a fixed validity and records them; counts token uses."""

    def __init__(
        self,
        *,
        authority: Authority,
        ledger: AuthLedger,
        revocations: Revocations,
        validity: dt.timedelta = DEFAULT_NODE_VALIDITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.authority = authority
        self.ledger = ledger
        self.revocations = revocations
        self.validity = validity
        self._clock = clock
        #: node -> monotonic time of its last renewal
        self._renewed: dict[str, float] = {}

    @property
    def min_renew_interval(self) -> float:
        """Seconds a node must wait between renewals: a tenth of the validity, at most 1 h."""
        return min(self.validity.total_seconds() / 10, MAX_RENEW_INTERVAL)

    async def admit_token(self, claims: Mapping[str, Any], node: str) -> None:
        """Check a verified token's own limits for a join as ``node``, and count the use.

        Call only once everything else about the join was found acceptable: a refused join
        must not use up a use.

        Raises:
            TokenError: the token is bound to another node, or used up.
            StoreError: the use could not be counted.
        """
        bound = claims.get("node")
        if bound is not None and bound != node:
            raise TokenError(f"token is for node {bound!r}, not {node!r}")
        uses = claims.get("uses")
        if uses is not None:
            count = await self.ledger.use_token(
                str(claims["jti"]), max_uses=int(uses), expires_at=float(claims["exp"])
            )
            log.info("join token use %d of %d (node %s)", count, uses, node)

    async def issue(self, csr_der: bytes, node: str) -> NodeCert:
        """Sign ``csr_der`` for ``node`` and record the certificate.

        Raises:
            AuthError: a bad node name or CSR.
            StoreError: the certificate could not be recorded (it is then not handed out).
        """
        cert = self.authority.issue_node_cert(csr_der, node, validity=self.validity)
        await self.ledger.record_cert(
            IssuedRecord(
                serial=cert.serial, node=node, issued_at=self._clock(), not_after=cert.not_after
            )
        )
        return cert

    async def renew(self, csr_der: bytes, node: str) -> NodeCert:
        """Issue a renewal for ``node``, whose current certificate the caller authenticated.

        Raises:
            AuthError: renewed less than :attr:`min_renew_interval` ago, or a bad CSR.
            StoreError: the certificate could not be recorded.
        """
        now = time.monotonic()
        last = self._renewed.get(node)
        if last is not None and now - last < self.min_renew_interval:
            raise AuthError(
                f"node {node} renewed {now - last:.1f}s ago; wait "
                f"{self.min_renew_interval:.0f}s between renewals"
            )
        cert = await self.issue(csr_der, node)
        self._renewed[node] = now
        return cert

    async def revoke_node(self, node: str) -> int:
        """Revoke every certificate of ``node`` (and close its link; see Revocations)."""
        return await self.revocations.revoke_node(node)
