"""Keys, CSRs and issued certificates: what needs ``cryptography``.

Imported by ``edgecore join`` and by certmanager when it renews (not at start-up: the library
costs ~9 MB of a running edge's memory, see :mod:`edgecore.der`).
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgecore.config import EdgeSettings
from edgecore.credentials import NODE_CN_PREFIX, pending_path, recover_pending
from hive.files import write_atomic


def make_key_and_csr(node_name: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh P-256 key and a DER CSR for it (cloudhub sets the real subject anyway)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                    x509.NameAttribute(NameOID.COMMON_NAME, NODE_CN_PREFIX + node_name),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.DER)


def csr_pem(csr_der: bytes) -> bytes:
    """The PEM spelling of a DER CSR (what the cloud's CSR resource carries)."""
    return x509.load_der_x509_csr(csr_der).public_bytes(serialization.Encoding.PEM)


def load_pem(pem: bytes) -> x509.Certificate:
    """The first certificate of ``pem``.

    Raises:
        ValueError: there is none.
    """
    return x509.load_pem_x509_certificate(pem)


def check_issued(
    cert: x509.Certificate, ca: x509.Certificate, key: ec.EllipticCurvePrivateKey, node: str
) -> None:
    """The cloud's answer must be signed by the pinned CA, for our key and our node name.

    Raises:
        ValueError: it is not.
    """
    try:
        cert.verify_directly_issued_by(ca)
    except Exception as exc:  # InvalidSignature, ValueError, TypeError
        raise ValueError("certificate is not signed by the pinned cloud CA") from exc
    if cert.public_key() != key.public_key():
        raise ValueError("certificate is for another key")
    cns = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    if [a.value for a in cns] != [NODE_CN_PREFIX + node]:
        raise ValueError(f"certificate does not name node {node}")


def write_pair(
    settings: EdgeSettings, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> None:
    """Replace node.key and node.crt together (see the module docstring).

    Raises:
        OSError: the files cannot be written; the old pair is still in place.
    """
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_next, cert_next = pending_path(settings.key_path), pending_path(settings.cert_path)
    # cert.next is written last and marks the pair complete: remove a stale one first.
    cert_next.unlink(missing_ok=True)
    write_atomic(key_next, key_pem, mode=0o600)
    write_atomic(cert_next, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    recover_pending(settings)


def parse_issued(content: object) -> x509.Certificate:
    """The cloud's answer: PEM text, or base64 of DER.

    Raises:
        ValueError: neither.
    """
    if not isinstance(content, str) or not content.strip():
        raise ValueError("the answer carries no certificate")
    text = content.strip()
    if text.startswith("-----BEGIN"):
        return x509.load_pem_x509_certificate(text.encode())
    try:
        return x509.load_der_x509_certificate(base64.b64decode(text, validate=True))
    except binascii.Error as exc:
        raise ValueError("the answer is neither PEM nor base64") from exc
