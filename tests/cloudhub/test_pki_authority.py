"""The CA and server certificate on disk: created once, loaded after, re-issued on SAN change."""

from __future__ import annotations

import ipaddress
import socket
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from cloudhub.pki import Authority
from wire.errors import ConfigError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return ips | set(ext.get_values_for_type(x509.DNSName))


def test_first_start_creates_ca_server_cert_and_secrets(tmp_path: Path) -> None:
    """A fresh data dir gets every file, secrets 0600 and the directory 0700."""
    data = tmp_path / "cloud"
    Authority.load_or_create(data, advertise=[])
    assert _mode(data) == 0o700
    for name in ("ca.key", "server.key", "admin.token", "token.key"):
        assert _mode(data / name) == 0o600, name
    for name in ("ca.crt", "server.crt"):
        assert (data / name).exists()
    assert not list(data.glob(".*.tmp"))


def test_keys_are_ecdsa_p256_and_ca_is_a_ca(tmp_path: Path) -> None:
    """CA and server keys are P-256 (stock edgecores offer only ECDHE-ECDSA on TLS 1.2)."""
    Authority.load_or_create(tmp_path, advertise=[])
    for name in ("ca.crt", "server.crt"):
        key = x509.load_pem_x509_certificate((tmp_path / name).read_bytes()).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert isinstance(key.curve, ec.SECP256R1)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)


def test_second_start_loads_the_same_ca_and_credentials(tmp_path: Path) -> None:
    """Restarting keeps the CA (so issued node certs stay valid) and the admin token."""
    first = Authority.load_or_create(tmp_path, advertise=["10.1.2.3"])
    server_pem = (tmp_path / "server.crt").read_bytes()
    second = Authority.load_or_create(tmp_path, advertise=["10.1.2.3"])
    assert second.ca_der == first.ca_der
    assert second.ca_hash == first.ca_hash
    assert second.admin_token == first.admin_token
    assert (tmp_path / "server.crt").read_bytes() == server_pem
    assert second.verify_join_token(first.issue_token(60))


def test_server_cert_sans_cover_loopback_hostname_and_advertise(tmp_path: Path) -> None:
    """SANs hold 127.0.0.1, ::1, localhost, the host name and every advertise address."""
    Authority.load_or_create(tmp_path, advertise=["192.0.2.7", "cloud.example.com", "2001:db8::1"])
    sans = _sans(tmp_path / "server.crt")
    expected = {"127.0.0.1", "::1", "localhost", socket.gethostname()}
    assert expected | {"192.0.2.7", "cloud.example.com", "2001:db8::1"} == sans
    cert = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.0.2.7") in ext.get_values_for_type(x509.IPAddress)


def test_changed_advertise_set_reissues_server_cert_under_same_ca(tmp_path: Path) -> None:
    """Adding an advertise address re-issues the server cert; the CA stays."""
    first = Authority.load_or_create(tmp_path, advertise=["192.0.2.7"])
    second = Authority.load_or_create(tmp_path, advertise=["192.0.2.7", "198.51.100.9"])
    assert second.ca_der == first.ca_der
    assert "198.51.100.9" in _sans(tmp_path / "server.crt")
    third = Authority.load_or_create(tmp_path, advertise=[])
    assert "198.51.100.9" not in _sans(tmp_path / "server.crt")
    assert third.ca_hash == first.ca_hash


def test_server_cert_from_another_ca_is_reissued(tmp_path: Path) -> None:
    """A server cert not signed by the CA on disk (restored backup mix-up) is replaced."""
    Authority.load_or_create(tmp_path / "a", advertise=[])
    Authority.load_or_create(tmp_path / "b", advertise=[])
    for name in ("server.crt", "server.key"):
        (tmp_path / "a" / name).write_bytes((tmp_path / "b" / name).read_bytes())
    Authority.load_or_create(tmp_path / "a", advertise=[])
    ca = x509.load_pem_x509_certificate((tmp_path / "a" / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "a" / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)


def test_ca_cert_without_its_key_is_refused(tmp_path: Path) -> None:
    """A lone ca.crt is an error, never silently replaced by a new CA."""
    Authority.load_or_create(tmp_path, advertise=[])
    (tmp_path / "ca.key").unlink()
    with pytest.raises(ConfigError, match=r"ca\.crt exists without its pair"):
        Authority.load_or_create(tmp_path, advertise=[])


def test_bad_advertise_address_is_refused(tmp_path: Path) -> None:
    """An advertise address that is neither an IP nor a DNS name is a ConfigError."""
    with pytest.raises(ConfigError, match="neither an IP address nor a DNS name"):
        Authority.load_or_create(tmp_path, advertise=["not a host"])


def test_admin_token_check_is_exact(tmp_path: Path) -> None:
    """Only the exact admin token passes the check."""
    authority = Authority.load_or_create(tmp_path, advertise=[])
    assert authority.check_admin_token(authority.admin_token)
    assert not authority.check_admin_token(authority.admin_token + "x")
    assert not authority.check_admin_token("")
    assert (tmp_path / "admin.token").read_text().strip() == authority.admin_token
