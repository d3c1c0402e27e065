"""The few X.509 pieces both the server certificate and node certificates are built from.

They live apart from either so that :mod:`cloudhub.pki.servercert` and
:mod:`cloudhub.pki.nodes` agree on clock-skew backdating and key usage without importing each
other. The logger keeps the name ``cloudhub.pki`` for every module of the package, so log
lines (and any filter on them) read as they did when the package was a single module.
"""

from __future__ import annotations

import datetime as dt
import logging

from cryptography import x509

logger = logging.getLogger("cloudhub.pki")

#: Certificates start this far in the past so a node whose clock lags a little accepts them
#: (at most a tenth of the certificate's lifetime, so very short test certificates stay sane).
CLOCK_SKEW = dt.timedelta(minutes=5)


def leaf_key_usage(*, rsa_key: bool = False) -> x509.KeyUsage:
    # keyEncipherment only means something for RSA key exchange; ECDSA keys just sign.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa_key,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
