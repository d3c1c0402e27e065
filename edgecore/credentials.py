"""The node's credentials on disk: ``ca.crt``, ``node.key`` (0600) and ``node.crt``.

Shared by ``edgecore join`` (first certificate, and re-join), certmanager (renewal) and edgehub
(which builds a fresh TLS context from these files for every connection attempt, so a renewed
or re-joined certificate is used without a restart).

What a running edge reads often (the certificate's serial and validity, the TLS context) needs
no crypto library (:mod:`edgecore.der`, :mod:`ssl`); making keys and checking issued certificates
(:mod:`edgecore.certmanager.keys`) does, and is imported only by ``edgecore join`` and a renewal.

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

from edgecore.config import EdgeSettings
from edgecore.der import cert_dates, first_certificate

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


def pending_path(path: Path) -> Path:
    """Where the next ``path`` is written before it replaces ``path``."""
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
    key_next, cert_next = pending_path(settings.key_path), pending_path(settings.cert_path)
    if not cert_next.exists():
        return False
    for src, dst in ((key_next, settings.key_path), (cert_next, settings.cert_path)):
        try:
            os.replace(src, dst)
        except FileNotFoundError:
            pass  # someone else completed this step
    fsync_dir(settings.data_dir)
    return True


def read_cert(settings: EdgeSettings) -> CertInfo:
    """The current node certificate.

    Raises:
        OSError: node.crt cannot be read.
        ValueError: it is not a PEM certificate.
    """
    recover_pending(settings)
    fp = fingerprint(settings)
    dates = cert_dates(first_certificate(settings.cert_path.read_bytes()))
    return CertInfo(
        serial=dates.serial,
        not_before=dates.not_before,
        not_after=dates.not_after,
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


def fsync_dir(path: Path) -> None:
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
