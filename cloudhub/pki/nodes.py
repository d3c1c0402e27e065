"""Node identity: node names, node certificates, and the CSRs they are issued from.

Why it looks the way it does:

- **The node certificate's subject is ours, not the CSR's.** cloudhub writes
  ``CN=system:node:NAME, O=system:nodes`` for the NodeName the token admitted, whatever the CSR
  asked for (stock edgecores ask for ``CN=kubeedge.io``). Identity checks on the websocket link
  then rely on a subject the edge could not choose.
- **Node certificates are short-lived** (30 days by default, KubeEdge's are 365) and renewed
  by the edge over its live link, so a stolen key is useful for weeks, not a year, and
  revocation lists stay small (a revoked serial can be forgotten once it would have expired).
- **Certificate time is checked here, not by OpenSSL** (:func:`check_node_cert_time`), so an
  expired edge is told what to do instead of getting a bare TLS alert; see
  :meth:`cloudhub.pki.authority.Authority.mtls_ssl_context`.

Everything here works on DER bytes and a CA key handed in; loading the CA is
:mod:`cloudhub.pki.datadir`'s job.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloudhub.pki.common import CLOCK_SKEW, leaf_key_usage, logger
from wire.errors import AuthError

#: Default node certificate lifetime (``cloudhub serve --node-cert-validity``). KubeEdge's is
#: 365 days; a month bounds what a stolen key is worth, and edges renew on their own at 70-80 %.
DEFAULT_NODE_VALIDITY = dt.timedelta(days=30)
#: The remedy every "this certificate no longer works" message ends with.
REJOIN_HINT = "run 'edgecore join --token <new token>'"
#: Subject prefix and organisation of node certificates (Kubernetes' node identity convention).
NODE_CN_PREFIX = "system:node:"
NODE_ORGANIZATION = "system:nodes"
#: RSA keys in CSRs are accepted only from this size up (EC keys: P-256 and larger curves).
MIN_RSA_BITS = 2048
#: Largest CSR accepted, bytes. A P-256 CSR is ~250 bytes; 64 KiB leaves room for odd clients.
MAX_CSR_BYTES = 64 * 1024
#: DNS-1123 subdomain: what Kubernetes accepts as a node name.
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")


def is_valid_node_name(name: str) -> bool:
    """True when ``name`` is a DNS-1123 subdomain (lower case, digits, ``-``, ``.``; <= 253)."""
    return 0 < len(name) <= 253 and _DNS1123_SUBDOMAIN.match(name) is not None


def node_name_from_cert(cert_der: bytes) -> str | None:
    """The node name in a node certificate's CN (``system:node:NAME`` -> ``NAME``).

    Returns None for a certificate that is not a node certificate or does not parse.
    """
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        return None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1:
        return None
    cn = cns[0].value
    if not isinstance(cn, str) or not cn.startswith(NODE_CN_PREFIX):
        return None
    name = cn[len(NODE_CN_PREFIX) :]
    return name or None


@dataclass(frozen=True, slots=True)
class NodeCert:
    """What cloudhub needs to know about a node certificate it issued or was shown."""

    node: str
    serial: int
    #: unix seconds
    not_before: float
    #: unix seconds
    not_after: float
    #: DER encoding
    der: bytes

    @property
    def pem(self) -> str:
        cert = x509.load_der_x509_certificate(self.der)
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def read_node_cert(cert_der: bytes) -> NodeCert | None:
    """Parse a node certificate; None if it does not parse or is not a node certificate."""
    node = node_name_from_cert(cert_der)
    if node is None:
        return None
    cert = x509.load_der_x509_certificate(cert_der)
    return NodeCert(
        node=node,
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        der=cert_der,
    )


def rfc3339(unix: float) -> str:
    """``2026-05-01T12:00:00Z``: how expiry times appear in messages."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_node_cert_time(cert: NodeCert, now: float) -> None:
    """Refuse a node certificate outside its validity period, saying what to do.

    Raises:
        AuthError: expired (names the time and the remedy) or not yet valid (a clock problem).
    """
    if now > cert.not_after:
        raise AuthError(
            f"node certificate of {cert.node} expired at {rfc3339(cert.not_after)}: {REJOIN_HINT}"
        )
    if now < cert.not_before:
        raise AuthError(
            f"node certificate of {cert.node} is not valid before {rfc3339(cert.not_before)}: "
            "check the edge's clock"
        )


def make_node_key_and_csr(node_name: str) -> tuple[bytes, bytes]:
    """A fresh P-256 key (PKCS#8 PEM) and a CSR for it (DER), subject ``system:node:NAME``.

    The subject is a courtesy: cloudhub sets the issued certificate's subject itself.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODE_ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, NODE_CN_PREFIX + node_name),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.DER)


def csr_public_key(csr_der: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The public key of an acceptable CSR.

    Raises:
        AuthError: the CSR is too large, does not parse, is not signed by its own key, or
            carries a weak or unsupported key.
    """
    if len(csr_der) > MAX_CSR_BYTES:
        raise AuthError(f"CSR of {len(csr_der)} bytes is too large")
    try:
        csr = x509.load_der_x509_csr(csr_der)
    except ValueError as exc:
        raise AuthError("CSR is not a DER-encoded certificate request") from exc
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise AuthError("CSR signature cannot be checked") from exc
    if not signature_ok:
        raise AuthError("CSR signature is invalid")
    public_key = csr.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.key_size < 256:
            raise AuthError(f"CSR key curve {public_key.curve.name} is too weak")
    elif isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise AuthError(f"CSR RSA key of {public_key.key_size} bits is too weak")
    else:
        raise AuthError("CSR key must be ECDSA or RSA")
    return public_key


def issue_node_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    csr_der: bytes,
    node_name: str,
    *,
    validity: dt.timedelta = DEFAULT_NODE_VALIDITY,
) -> NodeCert:
    """Issue a client certificate for ``node_name`` over the CSR's public key.

    The subject is ``CN=system:node:NAME, O=system:nodes`` whatever the CSR asked for;
    EKU is clientAuth only; it is valid for ``validity`` (backdated by a little clock
    skew allowance).

    Raises:
        AuthError: the node name is not a DNS-1123 name, or the CSR does not parse, is not
            self-signed by its key (no proof of possession), or carries a weak key.
        ValueError: ``validity`` is not positive.
    """
    if validity <= dt.timedelta(0):
        raise ValueError(f"certificate validity must be positive, not {validity}")
    if not is_valid_node_name(node_name):
        raise AuthError(f"invalid node name {node_name!r}: must be a DNS-1123 subdomain")
    public_key = csr_public_key(csr_der)
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODE_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, NODE_CN_PREFIX + node_name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - min(CLOCK_SKEW, validity / 10))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            leaf_key_usage(rsa_key=isinstance(public_key, rsa.RSAPublicKey)), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    logger.info(
        "issued a certificate for node %s (serial %x, valid until %s)",
        node_name,
        cert.serial_number,
        rfc3339(cert.not_valid_after_utc.timestamp()),
    )
    return NodeCert(
        node=node_name,
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        der=cert.public_bytes(serialization.Encoding.DER),
    )
