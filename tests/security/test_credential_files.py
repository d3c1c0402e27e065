"""Key and certificate are replaced as a pair: a crash at any step leaves a usable pair."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloudhub.app import CloudApp
from edgecore.certmanager.keys import check_issued, make_key_and_csr, write_pair
from edgecore.config import EdgeSettings
from edgecore.credentials import client_ssl_context, read_cert, recover_pending
from tests.security.conftest import join_node

pytestmark = pytest.mark.timeout(20)


def _new_pair(cloud: CloudApp, settings: EdgeSettings):  # type: ignore[no-untyped-def]
    key, csr = make_key_and_csr(settings.node_name)
    der = cloud.authority.sign_node_csr(csr, settings.node_name)
    return key, x509.load_der_x509_certificate(der)


def _usable(settings: EdgeSettings) -> bool:
    try:
        client_ssl_context(settings)
    except (ssl.SSLError, OSError, ValueError):
        return False
    return True


def _next(path: Path) -> Path:
    return path.with_name(f".{path.name}.next")


async def test_pair_is_replaced_together(cloud: CloudApp, tmp_path: Path) -> None:
    """write_pair installs the new key and certificate; the key stays owner-only."""
    settings = await join_node(cloud, tmp_path)
    old = read_cert(settings).serial
    key, cert = _new_pair(cloud, settings)
    write_pair(settings, key, cert)
    assert read_cert(settings).serial == cert.serial_number != old
    assert _usable(settings)
    assert os.stat(settings.key_path).st_mode & 0o777 == 0o600
    assert not _next(settings.key_path).exists() and not _next(settings.cert_path).exists()


@pytest.mark.parametrize("step", ["key-written", "both-written", "key-renamed"])
async def test_interrupted_replacement_leaves_a_usable_pair(
    cloud: CloudApp, tmp_path: Path, step: str
) -> None:
    """Whichever step a crash interrupts, the files on disk load as a matching pair."""
    settings = await join_node(cloud, tmp_path)
    old = read_cert(settings).serial
    key, cert = _new_pair(cloud, settings)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    _next(settings.key_path).write_bytes(key_pem)
    if step in ("both-written", "key-renamed"):
        _next(settings.cert_path).write_bytes(cert_pem)
    if step == "key-renamed":
        os.replace(_next(settings.key_path), settings.key_path)
    assert _usable(settings)  # recovery runs before every load
    expected = old if step == "key-written" else cert.serial_number
    assert read_cert(settings).serial == expected
    assert not _next(settings.cert_path).exists()


async def test_recovery_is_idempotent(cloud: CloudApp, tmp_path: Path) -> None:
    """Nothing pending: recovery does nothing and says so."""
    settings = await join_node(cloud, tmp_path)
    assert recover_pending(settings) is False
    assert _usable(settings)


async def test_answer_for_another_key_or_node_is_rejected(cloud: CloudApp, tmp_path: Path) -> None:
    """The edge checks a renewed certificate: our CA, our key, our node name."""
    settings = await join_node(cloud, tmp_path)
    ca = x509.load_pem_x509_certificate(settings.ca_path.read_bytes())
    key, cert = _new_pair(cloud, settings)
    check_issued(cert, ca, key, "edge-1")
    other_key, _ = make_key_and_csr("edge-1")
    with pytest.raises(ValueError, match="another key"):
        check_issued(cert, ca, other_key, "edge-1")
    with pytest.raises(ValueError, match="does not name node"):
        check_issued(cert, ca, key, "edge-2")
