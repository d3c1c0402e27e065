"""The node's credentials on disk: ``ca.crt``, ``node.key`` (0600) and ``node.crt``.

Shared by ``edgecore join`` (first certificate, and re-join), certmanager (renewal) and edgehub
(which builds a fresh TLS context from these files for every connection attempt, so a renewed
or re-joined certificate is used without a restart).

**Replacing the key and the certificate is one step, not two.** A key on disk next to a
certificate for another key locks the edge out (TLS refuses to load the pair). So a new pair is
first written completely beside the old one (``.node.key.next``, ``.node.crt.next``, fsynced),
then renamed into place key first. A crash at any point leaves either the old pair, or the new
pair, or a half-renamed state that :func:`recover_pending` (called before every load)
completes: the ``.next`` files exist only once both are complete.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgecore.config import EdgeSettings
from hive.files import write_atomic

log = logging.getLogger(__name__)

NODE_CN_PREFIX = "system:node:"
#: the remedy for a certificate that no longer works (same words as cloudhub's refusal)
REJOIN_HINT = "run 'edgecore join --token <new token>'"


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What the edge needs to know about its current certificate."""

    serial: int
    #: unix seconds
    not_before: float
    #: unix seconds
    not_after: float
    #: changes whenever node.crt is replaced (join, renewal)
    fingerprint: tuple[int, int, int]

    def expired(self, now: float) -> bool:
        return now > self.not_after


def rfc3339(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def expired_message(info: CertInfo) -> str:
    """The one line an edge logs when its certificate has expired."""
    return f"node certificate expired at {rfc3339(info.not_after)}: {REJOIN_HINT}"


def _next(path: Path) -> Path:
    return path.with_name(f".{path.name}.next")


def fingerprint(settings: EdgeSettings) -> tuple[int, int, int]:
    """(inode, size, mtime_ns) of node.crt, or zeros if it is missing."""
    try:
        st = settings.cert_path.stat()
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def recover_pending(settings: EdgeSettings) -> bool:
    """Finish a key/certificate swap that was interrupted (see the module docstring).

    Safe to run from several processes at once (``edgecore join`` next to a running
    edgecore): whoever renames first wins, the others find the file gone and move on. A lone
    ``.node.key.next`` is left alone: its certificate may be being written right now, and the
    next replacement overwrites it anyway. Returns whether anything was completed.
    """
    key_next, cert_next = _next(settings.key_path), _next(settings.cert_path)
    if not cert_next.exists():
        return False
    for src, dst in ((key_next, settings.key_path), (cert_next, settings.cert_path)):
        try:
            os.replace(src, dst)
        except FileNotFoundError:
            pass  # someone else completed this step
    _fsync_dir(settings.data_dir)
    return True


def read_cert(settings: EdgeSettings) -> CertInfo:
    """The current node certificate.

    Raises:
        OSError: node.crt cannot be read.
        ValueError: it is not a PEM certificate.
    """
    recover_pending(settings)
    fp = fingerprint(settings)
    cert = x509.load_pem_x509_certificate(settings.cert_path.read_bytes())
    return CertInfo(
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        fingerprint=fp,
    )


def client_ssl_context(settings: EdgeSettings) -> ssl.SSLContext:
    """Trust only the pinned cloud CA; present the node certificate as it is on disk now.

    Raises:
        OSError, ssl.SSLError, ValueError: missing or unusable files.
    """
    recover_pending(settings)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca_path))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(settings.cert_path), str(settings.key_path))
    return ctx


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
    key_next, cert_next = _next(settings.key_path), _next(settings.cert_path)
    # cert.next is written last and marks the pair complete: remove a stale one first.
    cert_next.unlink(missing_ok=True)
    write_atomic(key_next, key_pem, mode=0o600)
    write_atomic(cert_next, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    recover_pending(settings)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
