"""cloudhub's certificate authority, server certificate, admin credential and join tokens.

Import from here; the package is split only so each part can be read on its own:

- :mod:`~cloudhub.pki.authority`: :class:`Authority`, the CA and the credentials derived from
  it, loaded (or created) on start; it hands out join tokens, node certificates and the TLS
  contexts of cloudhub's ports.
- :mod:`~cloudhub.pki.datadir`: the files in ``--data-dir``, written atomically, and the CA.
- :mod:`~cloudhub.pki.servercert`: the server certificate and its SANs, re-issued on start
  when they would change.
- :mod:`~cloudhub.pki.tokens`: join tokens (``{CA hash}.{JWT}``).
- :mod:`~cloudhub.pki.nodes`: node names, node certificates and the CSRs they come from.
- :mod:`~cloudhub.pki.common`: clock-skew allowance and key usage shared by both leaf kinds.

Every key is ECDSA P-256: stock KubeEdge edgecores offer only ECDHE-ECDSA cipher suites on
TLS 1.2, so an RSA server key would lock them out. Each module's docstring says why its part
looks the way it does.
"""

from cloudhub.pki.authority import Authority, mtls_server_context
from cloudhub.pki.common import CLOCK_SKEW
from cloudhub.pki.datadir import (
    ADMIN_TOKEN_FILE,
    CA_CERT_FILE,
    CA_KEY_FILE,
    CA_VALIDITY_DAYS,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    TOKEN_KEY_FILE,
)
from cloudhub.pki.nodes import (
    DEFAULT_NODE_VALIDITY,
    MAX_CSR_BYTES,
    MIN_RSA_BITS,
    NODE_CN_PREFIX,
    NODE_ORGANIZATION,
    REJOIN_HINT,
    NodeCert,
    check_node_cert_time,
    is_valid_node_name,
    make_node_key_and_csr,
    node_name_from_cert,
    read_node_cert,
    rfc3339,
)
from cloudhub.pki.servercert import SERVER_RENEW_BEFORE, SERVER_VALIDITY_DAYS, default_sans
from cloudhub.pki.tokens import ca_hash_of

__all__ = [
    "ADMIN_TOKEN_FILE",
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CA_VALIDITY_DAYS",
    "CLOCK_SKEW",
    "DEFAULT_NODE_VALIDITY",
    "MAX_CSR_BYTES",
    "MIN_RSA_BITS",
    "NODE_CN_PREFIX",
    "NODE_ORGANIZATION",
    "REJOIN_HINT",
    "SERVER_CERT_FILE",
    "SERVER_KEY_FILE",
    "SERVER_RENEW_BEFORE",
    "SERVER_VALIDITY_DAYS",
    "TOKEN_KEY_FILE",
    "Authority",
    "NodeCert",
    "ca_hash_of",
    "check_node_cert_time",
    "default_sans",
    "is_valid_node_name",
    "make_node_key_and_csr",
    "mtls_server_context",
    "node_name_from_cert",
    "read_node_cert",
    "rfc3339",
]
