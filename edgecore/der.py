"""The three facts a running edge reads from its certificate, without a crypto library.

Why: edgehub and certmanager look at node.crt's serial and validity on every connection attempt
and renewal check. ``cryptography`` costs ~9 MB of edgecore's resident memory, and is otherwise
needed only to make a key and check the cloud's answer once per renewal
(:mod:`edgecore.certmanager.keys`, imported then). The validity sits at a fixed place of every
X.509 certificate (RFC 5280, 4.1):

    Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
        serialNumber INTEGER, signature SEQUENCE, issuer SEQUENCE,
        validity SEQUENCE { notBefore Time, notAfter Time }, ... }, ... }

so reading it is a walk of a few DER headers. Pure; tests hold it equal to ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import calendar
from dataclasses import dataclass

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_END = b"-----END CERTIFICATE-----"
_SEQUENCE = 0x30
_INTEGER = 0x02
_VERSION = 0xA0
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18


@dataclass(frozen=True, slots=True)
class CertDates:
    serial: int
    #: unix seconds
    not_before: float
    #: unix seconds
    not_after: float


def first_certificate(pem: bytes) -> bytes:
    """The DER of the first ``CERTIFICATE`` block of ``pem``.

    Raises:
        ValueError: there is none, or its base64 is broken.
    """
    start = pem.find(_BEGIN)
    end = pem.find(_END, start + 1)
    if start < 0 or end < 0:
        raise ValueError("no PEM certificate found")
    try:
        return base64.b64decode(b"".join(pem[start + len(_BEGIN) : end].split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"broken PEM certificate: {exc}") from exc


def cert_dates(der: bytes) -> CertDates:
    """Serial number and validity of the DER certificate ``der``.

    Raises:
        ValueError: not an X.509 certificate as RFC 5280 lays it out.
    """
    try:
        _, cert, _ = _element(der, 0, _SEQUENCE)
        _, pos, _ = _element(der, cert, _SEQUENCE)  # tbsCertificate
        if der[pos] == _VERSION:
            pos = _element(der, pos, _VERSION)[2]
        _, serial_at, pos = _element(der, pos, _INTEGER)
        serial = int.from_bytes(der[serial_at:pos], "big", signed=True)
        pos = _element(der, pos, _SEQUENCE)[2]  # signature algorithm
        pos = _element(der, pos, _SEQUENCE)[2]  # issuer
        _, validity, _ = _element(der, pos, _SEQUENCE)
        not_before, after_at = _time(der, validity)
        not_after, _ = _time(der, after_at)
    except IndexError as exc:
        raise ValueError("truncated certificate") from exc
    return CertDates(serial, not_before, not_after)


def _element(der: bytes, pos: int, tag: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at ``pos``, which must be a
    ``tag``."""
    if der[pos] != tag:
        raise ValueError(f"not an X.509 certificate (tag {der[pos]:#04x} at {pos})")
    length = der[pos + 1]
    start = pos + 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4:
            raise ValueError("not an X.509 certificate (bad DER length)")
        length = int.from_bytes(der[start : start + size], "big")
        start += size
    end = start + length
    if end > len(der):
        raise ValueError("truncated certificate")
    return tag, start, end


def _time(der: bytes, pos: int) -> tuple[float, int]:
    """A UTCTime or GeneralizedTime at ``pos`` as unix seconds, and where the next element is."""
    tag = der[pos]
    if tag not in (_UTC_TIME, _GENERALIZED_TIME):
        raise ValueError("not an X.509 certificate (validity is not a time)")
    _, start, end = _element(der, pos, tag)
    text = der[start:end].decode("ascii", errors="replace")
    # DER (X.690 11.7, 11.8): seconds present, no fraction, UTC ("Z")
    digits = text[:-1]
    if not text.endswith("Z") or not digits.isdigit():
        raise ValueError(f"not an X.509 certificate (time {text!r})")
    if tag == _UTC_TIME:
        if len(digits) != 12:
            raise ValueError(f"not an X.509 certificate (time {text!r})")
        year = int(digits[:2])
        year += 1900 if year >= 50 else 2000  # RFC 5280 4.1.2.5.1
        rest = digits[2:]
    else:
        if len(digits) != 14:
            raise ValueError(f"not an X.509 certificate (time {text!r})")
        year, rest = int(digits[:4]), digits[4:]
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError(f"not an X.509 certificate (time {text!r})")
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))), end
