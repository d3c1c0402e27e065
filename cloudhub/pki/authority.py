"""The :class:`Authority`: cloudhub's CA and everything derived from it, as one object.

Servers get one :class:`Authority` from :meth:`Authority.load_or_create` on start and ask it
for join tokens, node certificates and TLS contexts. It only holds the loaded material; the
work is done by the modules it delegates to (:mod:`~cloudhub.pki.datadir`,
:mod:`~cloudhub.pki.servercert`, :mod:`~cloudhub.pki.tokens`, :mod:`~cloudhub.pki.nodes`).

What stays here is the TLS policy. **The websocket and HTTPS ports check certificate *time*
themselves** (:meth:`Authority.mtls_ssl_context` turns off OpenSSL's time check;
:func:`~cloudhub.pki.nodes.check_node_cert_time` does it during the upgrade). The chain is
still verified by OpenSSL. The point is the answer: OpenSSL would drop an expired edge with a
bare TLS alert, while the upgrade refusal says "expired at ...: run 'edgecore join --token
...'" to the edge and names the node in cloudhub's log.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import os
import secrets
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloudhub.pki import nodes, tokens
from cloudhub.pki.datadir import (
    ADMIN_TOKEN_FILE,
    CA_CERT_FILE,
    CA_KEY_FILE,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    TOKEN_KEY_FILE,
    load_or_create_ca,
    load_or_create_secret,
)
from cloudhub.pki.nodes import DEFAULT_NODE_VALIDITY, NodeCert
from cloudhub.pki.servercert import check_san, default_sans, ensure_server_cert
from wire.errors import ConfigError

#: OpenSSL's ``X509_V_FLAG_NO_CHECK_TIME``: verify the chain, leave validity dates to us.
#: Python's ``ssl.VerifyFlags`` has no name for it; the value is stable since OpenSSL 1.1.0.
_X509_V_FLAG_NO_CHECK_TIME = 0x200000


class Authority:
    """The CA and the credentials derived from it, loaded from (or created in) a data dir.

    Use :meth:`load_or_create`; the constructor takes already-loaded material.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        ca_cert: x509.Certificate,
        ca_key: ec.EllipticCurvePrivateKey,
        admin_token: str,
        token_key: bytes,
    ) -> None:
        self._data_dir = data_dir
        self._ca_cert = ca_cert
        self._ca_key = ca_key
        self._admin_token = admin_token
        self._token_key = token_key
        self._ca_der = ca_cert.public_bytes(serialization.Encoding.DER)
        self._ca_hash = tokens.ca_hash_of(self._ca_der)

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def load_or_create(cls, data_dir: Path, *, advertise: list[str]) -> Authority:
        """Load the CA and credentials from ``data_dir``, creating what is missing.

        The server certificate is (re-)issued when it is missing, was issued by another CA,
        expires within :data:`~cloudhub.pki.servercert.SERVER_RENEW_BEFORE`, or its SANs
        differ from :func:`~cloudhub.pki.servercert.default_sans` of ``advertise``.

        Raises:
            ConfigError: unreadable or inconsistent files (e.g. ``ca.crt`` without ``ca.key``),
                or an advertise address that is neither an IP nor a DNS name.
        """
        for addr in advertise:
            check_san(addr)
        try:
            fresh = not data_dir.exists()
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if fresh or not (data_dir / CA_KEY_FILE).exists():
                # A new state dir (or one without a CA yet): it will hold private keys.
                os.chmod(data_dir, 0o700)
            ca_cert, ca_key = load_or_create_ca(data_dir)
            admin_token = load_or_create_secret(
                data_dir / ADMIN_TOKEN_FILE, lambda: secrets.token_urlsafe(32)
            )
            token_key_text = load_or_create_secret(
                data_dir / TOKEN_KEY_FILE,
                lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            )
            token_key = base64.urlsafe_b64decode(token_key_text.encode())
            ensure_server_cert(data_dir, ca_cert, ca_key, default_sans(advertise))
        except OSError as exc:
            raise ConfigError(f"cannot use data dir {data_dir}: {exc}") from exc
        if not admin_token or len(token_key) < 16:
            raise ConfigError(f"{data_dir}: admin.token or token.key is empty or too short")
        return cls(
            data_dir=data_dir,
            ca_cert=ca_cert,
            ca_key=ca_key,
            admin_token=admin_token,
            token_key=token_key,
        )

    # -- properties ----------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def ca_der(self) -> bytes:
        """The CA certificate, DER (what ``GET /ca.crt`` serves)."""
        return self._ca_der

    @property
    def ca_pem(self) -> bytes:
        return self._ca_cert.public_bytes(serialization.Encoding.PEM)

    @property
    def ca_hash(self) -> str:
        """Hex SHA-256 of :attr:`ca_der`: the join token's prefix."""
        return self._ca_hash

    @property
    def admin_token(self) -> str:
        """The admin API's bearer credential (``admin.token``). Never log it."""
        return self._admin_token

    @property
    def server_cert_path(self) -> Path:
        return self._data_dir / SERVER_CERT_FILE

    @property
    def server_key_path(self) -> Path:
        return self._data_dir / SERVER_KEY_FILE

    @property
    def ca_cert_path(self) -> Path:
        return self._data_dir / CA_CERT_FILE

    def check_admin_token(self, presented: str) -> bool:
        """Constant-time comparison of a presented admin credential."""
        return hmac.compare_digest(presented.encode(), self._admin_token.encode())

    # -- join tokens ---------------------------------------------------------------------

    def issue_token(
        self,
        ttl_seconds: float,
        *,
        now: float | None = None,
        uses: int | None = None,
        node: str | None = None,
    ) -> str:
        """A join token ``{ca_hash}.{JWT}`` valid for ``ttl_seconds`` from ``now``.

        Arguments and errors: see :func:`cloudhub.pki.tokens.issue_token`.
        """
        return tokens.issue_token(
            self._token_key, self._ca_hash, ttl_seconds, now=now, uses=uses, node=node
        )

    def verify_join_token(self, token: str) -> dict[str, Any]:
        """Check a join token (bare JWT, or the full ``{hash}.{jwt}``) and return its claims.

        Errors: see :func:`cloudhub.pki.tokens.verify_join_token`.
        """
        return tokens.verify_join_token(self._token_key, self._ca_hash, token)

    # -- node certificates ---------------------------------------------------------------

    def sign_node_csr(
        self, csr_der: bytes, node_name: str, *, validity: dt.timedelta = DEFAULT_NODE_VALIDITY
    ) -> bytes:
        """Issue a client certificate (DER) for ``node_name``; see :meth:`issue_node_cert`."""
        return self.issue_node_cert(csr_der, node_name, validity=validity).der

    def check_csr(self, csr_der: bytes) -> None:
        """Refuse a CSR that :meth:`issue_node_cert` would refuse, without signing anything.

        Raises:
            AuthError: see :meth:`issue_node_cert`.
        """
        nodes.csr_public_key(csr_der)

    def issue_node_cert(
        self, csr_der: bytes, node_name: str, *, validity: dt.timedelta = DEFAULT_NODE_VALIDITY
    ) -> NodeCert:
        """Issue a client certificate for ``node_name`` over the CSR's public key.

        Subject, extensions and errors: see :func:`cloudhub.pki.nodes.issue_node_cert`.
        """
        return nodes.issue_node_cert(
            self._ca_cert, self._ca_key, csr_der, node_name, validity=validity
        )

    # -- TLS contexts --------------------------------------------------------------------

    def server_ssl_context(self) -> ssl.SSLContext:
        """TLS server context for HTTPS (join + admin API): server cert, no client cert."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.server_cert_path, self.server_key_path)
        return ctx

    def https_ssl_context(self) -> ssl.SSLContext:
        """TLS server context for the HTTPS port: a client certificate is asked for, optional.

        Joining edges and edgectl present none; a stock KubeEdge edgecore renewing its
        certificate over ``/edge.crt`` presents its current one instead of a token. As on the
        websocket port, dates are left to the handler (:func:`check_node_cert_time`).
        """
        ctx = self.server_ssl_context()
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.verify_flags |= _X509_V_FLAG_NO_CHECK_TIME
        ctx.load_verify_locations(cadata=self._ca_der)
        return ctx

    def mtls_ssl_context(self) -> ssl.SSLContext:
        """TLS server context for the websocket port: client certificates signed by our CA.

        Validity dates are *not* checked here but during the websocket upgrade
        (:func:`check_node_cert_time`), so an edge with an expired certificate is told so
        in words instead of getting a bare TLS alert. Whoever uses this context for anything
        else must check the time too.
        """
        return mtls_server_context(self.server_cert_path, self.server_key_path, self._ca_der)


def mtls_server_context(cert: Path, key: Path, ca_der: bytes) -> ssl.SSLContext:
    """:meth:`Authority.mtls_ssl_context` from its files: the server certificate and key, and
    the CA (DER) client certificates must chain to. Link worker processes build theirs so."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= _X509_V_FLAG_NO_CHECK_TIME
    ctx.load_verify_locations(cadata=ca_der)
    return ctx
