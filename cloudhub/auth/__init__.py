"""cloudhub's memory of who may connect: join-token use counts and revoked certificates.

- :mod:`cloudhub.auth.ledger` — the :class:`~cloudhub.auth.ledger.AuthLedger` protocol and its
  implementations: SQLite in the data dir (``auth.db``, mode 0600) and in memory (tests, and
  callers that never count token uses).
- :mod:`cloudhub.auth.kube_ledger` — the same records in one Secret (``edgebridge-auth``) in
  Kubernetes mode, so every replica counts the same token uses and honours the same revocations.
- :mod:`cloudhub.auth.revocation` — :class:`~cloudhub.auth.revocation.Revocations`, the
  in-memory set of revoked serials the websocket handshake consults (a set lookup per
  connection; the ledger is read only at start and on refresh).
- :mod:`cloudhub.auth.issuer` — :class:`~cloudhub.auth.issuer.CertIssuer`, the one place node
  certificates are issued (join and renewal alike) and recorded, so every certificate cloudhub
  ever handed out can be revoked by node name.
- :mod:`cloudhub.auth.nodeauth` — the pure rule for what a node may write upstream (its own
  Node/Lease, its pods' and devices' status).

Why a ledger at all: a JWT can say how many joins it admits, but only the cloud can count
them; and a certificate is valid until it expires unless the cloud remembers that it was
revoked. Both facts must survive a restart, hence a file, not a dict.
"""

from cloudhub.auth.issuer import CertIssuer, Revoker
from cloudhub.auth.ledger import AuthLedger, IssuedRecord, MemoryLedger, SqliteLedger
from cloudhub.auth.revocation import RevocationCheck, Revocations

__all__ = [
    "AuthLedger",
    "CertIssuer",
    "IssuedRecord",
    "MemoryLedger",
    "RevocationCheck",
    "Revocations",
    "Revoker",
    "SqliteLedger",
]
