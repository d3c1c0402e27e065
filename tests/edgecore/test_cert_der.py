"""The certificate facts a running edge reads without ``cryptography`` equal what it reads."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore.der import cert_dates, first_certificate

pytestmark = pytest.mark.timeout(60)

_KEY = ec.generate_private_key(ec.SECP256R1())
_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:node:edge-1")])
_UTC = dt.UTC


def make_cert(serial: int, not_before: dt.datetime, not_after: dt.datetime, *, v1: bool) -> bytes:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_NAME)
        .issuer_name(_NAME)
        .public_key(_KEY.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if not v1:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    return builder.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


times = st.datetimes(
    min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(9999, 12, 31), timezones=st.just(_UTC)
).map(lambda t: t.replace(microsecond=0))


@settings(max_examples=60, deadline=None)
@given(
    serial=st.integers(min_value=1, max_value=2**159 - 1),
    not_before=times,
    not_after=times,
    v1=st.booleans(),
)
def test_dates_equal_cryptography(
    serial: int, not_before: dt.datetime, not_after: dt.datetime, v1: bool
) -> None:
    """Serial, notBefore and notAfter read from the DER equal cryptography's, UTCTime (before
    2050) and GeneralizedTime alike."""
    not_before, not_after = sorted((not_before, not_after))
    pem = make_cert(serial, not_before, not_after, v1=v1)
    ref = x509.load_pem_x509_certificate(pem)
    got = cert_dates(first_certificate(pem))
    assert got.serial == ref.serial_number
    assert got.not_before == ref.not_valid_before_utc.timestamp()
    assert got.not_after == ref.not_valid_after_utc.timestamp()


def test_first_of_a_chain() -> None:
    """Of a PEM chain, the first certificate counts (as for cryptography and TLS)."""
    first = make_cert(
        7, dt.datetime(2030, 1, 1, tzinfo=_UTC), dt.datetime(2031, 1, 1, tzinfo=_UTC), v1=False
    )
    second = make_cert(
        9, dt.datetime(2040, 1, 1, tzinfo=_UTC), dt.datetime(2041, 1, 1, tzinfo=_UTC), v1=False
    )
    assert cert_dates(first_certificate(first + second)).serial == 7


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_is_a_value_error(data: bytes) -> None:
    """Any bytes are read, or refused with ValueError; never another exception."""
    try:
        cert_dates(data)
    except ValueError:
        pass


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=2000))
def test_truncated_certificate_is_a_value_error(cut: int) -> None:
    """A certificate cut anywhere before its end is refused with ValueError."""
    pem = make_cert(
        5, dt.datetime(2030, 1, 1, tzinfo=_UTC), dt.datetime(2031, 1, 1, tzinfo=_UTC), v1=False
    )
    der = first_certificate(pem)
    if cut >= len(der):
        return
    with pytest.raises(ValueError):
        cert_dates(der[:cut])


def test_no_pem_block_is_a_value_error() -> None:
    """Text without a CERTIFICATE block is refused with one clear ValueError."""
    with pytest.raises(ValueError, match="no PEM certificate"):
        first_certificate(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
