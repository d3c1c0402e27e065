"""Node certificates: cloudhub sets the subject, checks the CSR, and mTLS accepts the result."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloudhub.pki import Authority, make_node_key_and_csr, node_name_from_cert
from wire.errors import AuthError


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority.load_or_create(tmp_path_factory.mktemp("cloud"), advertise=[])


def _csr(subject_cn: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def test_subject_is_set_by_cloudhub_not_the_csr(authority: Authority) -> None:
    """A stock edgecore CSR (CN=kubeedge.io) yields CN=system:node:NAME, O=system:nodes."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = authority.sign_node_csr(_csr("kubeedge.io", key), "edge-1")
    cert = x509.load_der_x509_certificate(der)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "system:node:edge-1"
    )
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:nodes"
    )
    assert node_name_from_cert(der) == "edge-1"
    assert cert.public_key() == key.public_key()


def test_node_cert_is_client_auth_only_and_signed_by_ca(authority: Authority) -> None:
    """EKU is clientAuth, the cert is not a CA, and it chains to the CA for 30 days."""
    _, csr = make_node_key_and_csr("edge-2")
    cert = x509.load_der_x509_certificate(authority.sign_node_csr(csr, "edge-2"))
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(x509.load_der_x509_certificate(authority.ca_der))
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 30 <= lifetime.days <= 31


def test_rsa_csr_is_accepted(authority: Authority) -> None:
    """An RSA-2048 CSR is signed too (older edgecores)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert node_name_from_cert(authority.sign_node_csr(_csr("x", key), "edge-rsa")) == "edge-rsa"


def test_csr_with_broken_signature_is_refused(authority: Authority) -> None:
    """A CSR whose self-signature does not verify proves no key possession: refused."""
    _, csr = make_node_key_and_csr("edge-3")
    tampered = bytearray(csr)
    # Flip a bit inside the subject (CN text), leaving the signature as it was.
    index = bytes(csr).index(b"edge-3")
    tampered[index] ^= 0x01
    with pytest.raises(AuthError, match="signature"):
        authority.sign_node_csr(bytes(tampered), "edge-3")


@pytest.mark.parametrize("garbage", [b"", b"not a csr", b"\x30\x03\x02\x01\x00"])
def test_undecodable_csr_is_refused(authority: Authority, garbage: bytes) -> None:
    """Bytes that are not a DER CSR raise AuthError."""
    with pytest.raises(AuthError, match="CSR"):
        authority.sign_node_csr(garbage, "edge-4")


@pytest.mark.parametrize("name", ["", "Edge", "edge_1", "-edge", "edge-", "a" * 254, "a..b"])
def test_invalid_node_name_is_refused(authority: Authority, name: str) -> None:
    """Node names must be DNS-1123 subdomains."""
    _, csr = make_node_key_and_csr("x")
    with pytest.raises(AuthError, match="invalid node name"):
        authority.sign_node_csr(csr, name)


def test_node_name_from_non_node_cert_is_none(authority: Authority) -> None:
    """The server certificate and garbage are not node identities."""
    server = x509.load_pem_x509_certificate(authority.server_cert_path.read_bytes())
    assert node_name_from_cert(server.public_bytes(serialization.Encoding.DER)) is None
    assert node_name_from_cert(b"junk") is None


async def test_mtls_context_accepts_node_cert_and_refuses_anonymous(
    authority: Authority, tmp_path: Path
) -> None:
    """The wss TLS context admits a client with a node cert and rejects one without."""
    key_pem, csr = make_node_key_and_csr("edge-5")
    cert = x509.load_der_x509_certificate(authority.sign_node_csr(csr, "edge-5"))
    (tmp_path / "node.key").write_bytes(key_pem)
    (tmp_path / "node.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    seen: list[str | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        seen.append(node_name_from_cert(peer))
        writer.write(b"hi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=authority.mtls_ssl_context())
    port = server.sockets[0].getsockname()[1]
    try:
        client = ssl.create_default_context(cadata=authority.ca_der)
        client.load_cert_chain(tmp_path / "node.crt", tmp_path / "node.key")
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        assert await reader.read() == b"hi"
        writer.close()
        assert seen == ["edge-5"]

        anonymous = ssl.create_default_context(cadata=authority.ca_der)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=anonymous)
            # With TLS 1.3 the client learns of the refusal only when it reads.
            data = await reader.read()
            writer.close()
        except (ssl.SSLError, ConnectionError):
            data = b""
        assert data == b""
        assert seen == ["edge-5"]  # the handler never ran for the anonymous client
    finally:
        server.close()
        await server.wait_closed()
