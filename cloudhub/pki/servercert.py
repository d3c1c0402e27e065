"""The server certificate cloudhub's HTTPS and websocket ports present, and its SANs.

Why it looks the way it does: **the server certificate is re-issued whenever its SANs would
change** (a new ``--advertise-address``, a renamed host, a new CA) or it is about to expire.
KubeEdge's most common join failure is "SAN does not match the dialled address"; re-issuing on
start makes fixing it a restart with one more flag. Its key is ECDSA P-256, because stock
KubeEdge edgecores offer only ECDHE-ECDSA cipher suites on TLS 1.2 and an RSA server key would
lock them out.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloudhub.pki.common import CLOCK_SKEW, leaf_key_usage, logger
from cloudhub.pki.datadir import (
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    key_pem,
    load_cert,
    load_ec_key,
)
from hive.files import write_atomic
from wire.errors import ConfigError

#: Server certificate lifetime; it is re-issued on start anyway when close to expiry.
SERVER_VALIDITY_DAYS = 825
#: A server certificate with less than this left is re-issued on start.
SERVER_RENEW_BEFORE = dt.timedelta(days=30)


def default_sans(advertise: Iterable[str]) -> set[str]:
    """The SANs a server certificate must carry: loopback, this host's name, ``advertise``."""
    return {"127.0.0.1", "::1", "localhost", socket.gethostname(), *advertise}


def check_san(addr: str) -> None:
    try:
        ipaddress.ip_address(addr)
        return
    except ValueError:
        pass
    # Lenient DNS check: allow upper case and wildcards as x509 does; refuse spaces etc.
    if not addr or len(addr) > 253 or not re.match(r"^[A-Za-z0-9*]([-A-Za-z0-9_.]*)$", addr):
        raise ConfigError(f"advertise address {addr!r} is neither an IP address nor a DNS name")


def _san_entries(names: Iterable[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in sorted(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _sans_of(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    ips = {str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)}
    return ips | set(ext.value.get_values_for_type(x509.DNSName))


def _normalise_sans(names: Iterable[str]) -> set[str]:
    """Canonical text of each SAN (so ``::0001`` and ``::1`` compare equal)."""
    out: set[str] = set()
    for name in names:
        try:
            out.add(str(ipaddress.ip_address(name)))
        except ValueError:
            out.add(name)
    return out


def _server_cert_current(
    data_dir: Path, ca_cert: x509.Certificate, wanted: set[str]
) -> tuple[bool, str]:
    cert_path, key_path = data_dir / SERVER_CERT_FILE, data_dir / SERVER_KEY_FILE
    if not cert_path.exists() or not key_path.exists():
        return False, "missing"
    try:
        cert, key = load_cert(cert_path), load_ec_key(key_path)
    except ConfigError:
        return False, "unreadable"
    if cert.public_key() != key.public_key():
        return False, "key mismatch"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False, "issued by another CA"
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < SERVER_RENEW_BEFORE:
        return False, "expiring"
    if _normalise_sans(_sans_of(cert)) != _normalise_sans(wanted):
        return False, "addresses changed"
    return True, ""


def ensure_server_cert(
    data_dir: Path,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    sans: set[str],
) -> None:
    current, why = _server_cert_current(data_dir, ca_cert, sans)
    if current:
        return
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgebridge"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "cloudhub"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=SERVER_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_san_entries(sans)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_atomic(data_dir / SERVER_KEY_FILE, key_pem(key), mode=0o600)
    write_atomic(
        data_dir / SERVER_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), mode=0o644
    )
    logger.info("issued the server certificate (%s) for %s", why, ", ".join(sorted(sans)))
