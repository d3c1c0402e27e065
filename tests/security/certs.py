"""Certificates the cloud would never issue: expired, not yet valid, from another CA."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgecore.config import EdgeSettings


def forge_node_cert(
    settings: EdgeSettings,
    ca_dir: Path,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    node: str | None = None,
) -> x509.Certificate:
    """Sign a node certificate with the CA in ``ca_dir`` and install it (with a fresh key)."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(
                        NameOID.COMMON_NAME, f"system:node:{node or settings.node_name}"
                    )
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    settings.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
