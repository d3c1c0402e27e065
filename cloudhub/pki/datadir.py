"""The data dir (``--data-dir``): file names, safe writes, and the CA kept there.

Why it looks the way it does:

- **The CA lives on disk** (``ca.crt``/``ca.key``), created on first start and loaded
  afterwards, so node certificates stay valid across restarts. It is ECDSA P-256, like every
  key cloudhub makes: stock KubeEdge edgecores offer only ECDHE-ECDSA cipher suites on TLS 1.2.
- **Secrets are written atomically with mode 0600** (:func:`write_atomic`); a crash mid-write
  never leaves a truncated key behind.
- **A lone half of the CA pair is refused, never replaced**: replacing it would orphan every
  certificate already issued.

The server certificate kept next to the CA is :mod:`cloudhub.pki.servercert`'s; putting it
all together on start is :meth:`cloudhub.pki.Authority.load_or_create`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloudhub.pki.common import CLOCK_SKEW, logger
from hive.files import write_atomic
from wire.errors import ConfigError

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
ADMIN_TOKEN_FILE = "admin.token"
TOKEN_KEY_FILE = "token.key"

#: CA lifetime. Long, because rotating the CA means re-joining every node.
CA_VALIDITY_DAYS = 3650


def load_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    if path.exists():
        return path.read_text().strip()
    value = make()
    write_atomic(path, (value + "\n").encode(), mode=0o600)
    logger.info("created %s", path)
    return value


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is not an ECDSA key")
    return key


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM certificate") from exc


def load_or_create_ca(
    data_dir: Path,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = data_dir / CA_CERT_FILE, data_dir / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        cert, key = load_cert(cert_path), load_ec_key(key_path)
        if cert.public_key() != key.public_key():
            raise ConfigError(f"{cert_path} and {key_path} do not belong together")
        return cert, key
    if cert_path.exists() or key_path.exists():
        present = cert_path if cert_path.exists() else key_path
        raise ConfigError(f"{present} exists without its pair; restore it or remove it")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgebridge"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"edgebridge-ca-{secrets.token_hex(4)}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a crash between the two writes leaves a lone key, which is refused loudly
    # above rather than silently replaced (that would orphan every issued certificate).
    write_atomic(key_path, key_pem(key), mode=0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    logger.info("created a new CA in %s", data_dir)
    return cert, key
