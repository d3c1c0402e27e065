"""cloudhub's certificate authority, server certificate, admin credential and join tokens.

Why it looks the way it does:

- **ECDSA P-256 everywhere.** Stock KubeEdge edgecores offer only ECDHE-ECDSA cipher suites on
  TLS 1.2, so an RSA server key would lock them out. The CA, the server key and node keys are
  all P-256.
- **The CA lives on disk in ``--data-dir``** (``ca.crt``/``ca.key``), created on first start and
  loaded afterwards, so node certificates stay valid across restarts. Secrets are written
  atomically with mode 0600; a crash mid-write never leaves a truncated key behind.
- **The server certificate is re-issued whenever its SANs would change** (a new
  ``--advertise-address``, a renamed host, a new CA) or it is about to expire. KubeEdge's most
  common join failure is "SAN does not match the dialled address"; re-issuing on start makes
  fixing it a restart with one more flag.
- **Join tokens are ``{sha256-hex of CA DER}.{JWT}``**, as KubeEdge's. The prefix lets an edge
  pin the CA it fetched over an unauthenticated connection; the JWT (HS256, with ``exp``,
  ``iat`` and ``jti``) proves the token came from this cloudhub. KubeEdge signs the JWT with the
  CA key itself; we use a separate random HMAC secret (``token.key``) so the CA private key is
  only ever used for X.509 signatures.
- **The node certificate's subject is ours, not the CSR's.** cloudhub writes
  ``CN=system:node:NAME, O=system:nodes`` for the NodeName the token admitted, whatever the CSR
  asked for (stock edgecores ask for ``CN=kubeedge.io``). Identity checks on the websocket link
  then rely on a subject the edge could not choose.
- **Node certificates are short-lived** (30 days by default, KubeEdge's are 365) and renewed
  by the edge over its live link, so a stolen key is useful for weeks, not a year, and
  revocation lists stay small (a revoked serial can be forgotten once it would have expired).
- **The websocket port checks certificate *time* itself** (:meth:`Authority.mtls_ssl_context`
  turns off OpenSSL's time check; :func:`check_node_cert_time` does it during the upgrade). The
  chain is still verified by OpenSSL. The point is the answer: OpenSSL would drop an expired
  edge with a bare TLS alert, while the upgrade refusal says "expired at ...: run 'edgecore
  join --token ...'" to the edge and names the node in cloudhub's log.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import socket
import ssl
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wire.errors import AuthError, ConfigError, TokenError

logger = logging.getLogger(__name__)

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
ADMIN_TOKEN_FILE = "admin.token"
TOKEN_KEY_FILE = "token.key"

#: CA lifetime. Long, because rotating the CA means re-joining every node.
CA_VALIDITY_DAYS = 3650
#: Server certificate lifetime; it is re-issued on start anyway when close to expiry.
SERVER_VALIDITY_DAYS = 825
#: A server certificate with less than this left is re-issued on start.
SERVER_RENEW_BEFORE = dt.timedelta(days=30)
#: Default node certificate lifetime (``cloudhub serve --node-cert-validity``). KubeEdge's is
#: 365 days; a month bounds what a stolen key is worth, and edges renew on their own at 70-80 %.
DEFAULT_NODE_VALIDITY = dt.timedelta(days=30)
#: Certificates start this far in the past so a node whose clock lags a little accepts them
#: (at most a tenth of the certificate's lifetime, so very short test certificates stay sane).
CLOCK_SKEW = dt.timedelta(minutes=5)
#: OpenSSL's ``X509_V_FLAG_NO_CHECK_TIME``: verify the chain, leave validity dates to us.
#: Python's ``ssl.VerifyFlags`` has no name for it; the value is stable since OpenSSL 1.1.0.
_X509_V_FLAG_NO_CHECK_TIME = 0x200000
#: The remedy every "this certificate no longer works" message ends with.
REJOIN_HINT = "run 'edgecore join --token <new token>'"
#: Subject prefix and organisation of node certificates (Kubernetes' node identity convention).
NODE_CN_PREFIX = "system:node:"
NODE_ORGANIZATION = "system:nodes"
#: RSA keys in CSRs are accepted only from this size up (EC keys: P-256 and larger curves).
MIN_RSA_BITS = 2048
#: Largest CSR accepted, bytes. A P-256 CSR is ~250 bytes; 64 KiB leaves room for odd clients.
MAX_CSR_BYTES = 64 * 1024
#: A full token is "{64 hex chars}.{jwt}".
_HASH_PREFIX = re.compile(r"^[0-9a-f]{64}$")
#: DNS-1123 subdomain: what Kubernetes accepts as a node name.
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_JWT_ALGORITHM = "HS256"


def is_valid_node_name(name: str) -> bool:
    """True when ``name`` is a DNS-1123 subdomain (lower case, digits, ``-``, ``.``; <= 253)."""
    return 0 < len(name) <= 253 and _DNS1123_SUBDOMAIN.match(name) is not None


def ca_hash_of(ca_der: bytes) -> str:
    """The token prefix for a CA: lower-case hex SHA-256 of its DER encoding."""
    return hashlib.sha256(ca_der).hexdigest()


def node_name_from_cert(cert_der: bytes) -> str | None:
    """The node name in a node certificate's CN (``system:node:NAME`` -> ``NAME``).

    Returns None for a certificate that is not a node certificate or does not parse.
    """
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        return None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1:
        return None
    cn = cns[0].value
    if not isinstance(cn, str) or not cn.startswith(NODE_CN_PREFIX):
        return None
    name = cn[len(NODE_CN_PREFIX) :]
    return name or None


@dataclass(frozen=True, slots=True)
class NodeCert:
    """What cloudhub needs to know about a node certificate it issued or was shown."""

    node: str
    serial: int
    #: unix seconds
    not_before: float
    #: unix seconds
    not_after: float
    #: DER encoding
    der: bytes

    @property
    def pem(self) -> str:
        cert = x509.load_der_x509_certificate(self.der)
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def read_node_cert(cert_der: bytes) -> NodeCert | None:
    """Parse a node certificate; None if it does not parse or is not a node certificate."""
    node = node_name_from_cert(cert_der)
    if node is None:
        return None
    cert = x509.load_der_x509_certificate(cert_der)
    return NodeCert(
        node=node,
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        der=cert_der,
    )


def rfc3339(unix: float) -> str:
    """``2026-05-01T12:00:00Z``: how expiry times appear in messages."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_node_cert_time(cert: NodeCert, now: float) -> None:
    """Refuse a node certificate outside its validity period, saying what to do.

    Raises:
        AuthError: expired (names the time and the remedy) or not yet valid (a clock problem).
    """
    if now > cert.not_after:
        raise AuthError(
            f"node certificate of {cert.node} expired at {rfc3339(cert.not_after)}: {REJOIN_HINT}"
        )
    if now < cert.not_before:
        raise AuthError(
            f"node certificate of {cert.node} is not valid before {rfc3339(cert.not_before)}: "
            "check the edge's clock"
        )


def make_node_key_and_csr(node_name: str) -> tuple[bytes, bytes]:
    """A fresh P-256 key (PKCS#8 PEM) and a CSR for it (DER), subject ``system:node:NAME``.

    The subject is a courtesy: cloudhub sets the issued certificate's subject itself.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODE_ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, NODE_CN_PREFIX + node_name),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.DER)


def default_sans(advertise: Iterable[str]) -> set[str]:
    """The SANs a server certificate must carry: loopback, this host's name, ``advertise``."""
    return {"127.0.0.1", "::1", "localhost", socket.gethostname(), *advertise}


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
        self._ca_hash = ca_hash_of(self._ca_der)

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def load_or_create(cls, data_dir: Path, *, advertise: list[str]) -> Authority:
        """Load the CA and credentials from ``data_dir``, creating what is missing.

        The server certificate is (re-)issued when it is missing, was issued by another CA,
        expires within :data:`SERVER_RENEW_BEFORE`, or its SANs differ from
        :func:`default_sans` of ``advertise``.

        Raises:
            ConfigError: unreadable or inconsistent files (e.g. ``ca.crt`` without ``ca.key``),
                or an advertise address that is neither an IP nor a DNS name.
        """
        for addr in advertise:
            _check_san(addr)
        try:
            fresh = not data_dir.exists()
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if fresh or not (data_dir / CA_KEY_FILE).exists():
                # A new state dir (or one without a CA yet): it will hold private keys.
                os.chmod(data_dir, 0o700)
            ca_cert, ca_key = _load_or_create_ca(data_dir)
            admin_token = _load_or_create_secret(
                data_dir / ADMIN_TOKEN_FILE, lambda: secrets.token_urlsafe(32)
            )
            token_key_text = _load_or_create_secret(
                data_dir / TOKEN_KEY_FILE,
                lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            )
            token_key = base64.urlsafe_b64decode(token_key_text.encode())
            _ensure_server_cert(data_dir, ca_cert, ca_key, default_sans(advertise))
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

        Args:
            ttl_seconds: lifetime, > 0.
            now: issue time (unix seconds); defaults to the current time. Tests pass a past
                time to get an already expired token.
            uses: how many joins the token admits (claim ``uses``; counted by the join
                endpoint in the auth ledger); ``None`` for any number until it expires.
            node: the only node name the token admits (claim ``node``); ``None`` for any.

        Raises:
            ValueError: ``ttl_seconds`` is not a positive finite number, ``uses`` < 1, or
                ``node`` is not a valid node name.
        """
        if not ttl_seconds > 0 or ttl_seconds == float("inf"):
            raise ValueError(f"token TTL must be a positive number of seconds, not {ttl_seconds}")
        if uses is not None and uses < 1:
            raise ValueError(f"token uses must be at least 1, not {uses}")
        if node is not None and not is_valid_node_name(node):
            raise ValueError(f"invalid node name {node!r}: must be a DNS-1123 subdomain")
        issued = dt.datetime.now(dt.UTC).timestamp() if now is None else now
        claims: dict[str, Any] = {
            "iat": int(issued),
            "exp": int(issued + ttl_seconds),
            "jti": uuid.uuid4().hex,
        }
        if uses is not None:
            claims["uses"] = uses
        if node is not None:
            claims["node"] = node
        token = jwt.encode(claims, self._token_key, algorithm=_JWT_ALGORITHM)
        return f"{self._ca_hash}.{token}"

    def verify_join_token(self, token: str) -> dict[str, Any]:
        """Check a join token (bare JWT, or the full ``{hash}.{jwt}``) and return its claims.

        Raises:
            TokenError: "token expired", "token signature invalid", "malformed token", or
                "token is for another cloudhub's CA" when the full form's hash is not ours.
        """
        bare = token.strip()
        parts = bare.split(".")
        if len(parts) == 4 and _HASH_PREFIX.match(parts[0]):
            if not hmac.compare_digest(parts[0], self._ca_hash):
                raise TokenError("token is for another cloudhub's CA")
            bare = ".".join(parts[1:])
        elif len(parts) != 3:
            raise TokenError("malformed token")
        try:
            claims: dict[str, Any] = jwt.decode(
                bare,
                self._token_key,
                algorithms=[_JWT_ALGORITHM],
                options={"require": ["exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("token signature invalid") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError("malformed token") from exc
        uses = claims.get("uses")
        if uses is not None and (type(uses) is not int or uses < 1):
            raise TokenError("malformed token")
        node = claims.get("node")
        if node is not None and not isinstance(node, str):
            raise TokenError("malformed token")
        return claims

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
        _csr_public_key(csr_der)

    def issue_node_cert(
        self, csr_der: bytes, node_name: str, *, validity: dt.timedelta = DEFAULT_NODE_VALIDITY
    ) -> NodeCert:
        """Issue a client certificate for ``node_name`` over the CSR's public key.

        The subject is ``CN=system:node:NAME, O=system:nodes`` whatever the CSR asked for;
        EKU is clientAuth only; it is valid for ``validity`` (backdated by a little clock
        skew allowance).

        Raises:
            AuthError: the node name is not a DNS-1123 name, or the CSR does not parse, is not
                self-signed by its key (no proof of possession), or carries a weak key.
            ValueError: ``validity`` is not positive.
        """
        if validity <= dt.timedelta(0):
            raise ValueError(f"certificate validity must be positive, not {validity}")
        if not is_valid_node_name(node_name):
            raise AuthError(f"invalid node name {node_name!r}: must be a DNS-1123 subdomain")
        public_key = _csr_public_key(csr_der)
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODE_ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, NODE_CN_PREFIX + node_name),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - min(CLOCK_SKEW, validity / 10))
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _leaf_key_usage(rsa_key=isinstance(public_key, rsa.RSAPublicKey)), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        logger.info(
            "issued a certificate for node %s (serial %x, valid until %s)",
            node_name,
            cert.serial_number,
            rfc3339(cert.not_valid_after_utc.timestamp()),
        )
        return NodeCert(
            node=node_name,
            serial=cert.serial_number,
            not_before=cert.not_valid_before_utc.timestamp(),
            not_after=cert.not_valid_after_utc.timestamp(),
            der=cert.public_bytes(serialization.Encoding.DER),
        )

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key())

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
        ctx = self.server_ssl_context()
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= _X509_V_FLAG_NO_CHECK_TIME
        ctx.load_verify_locations(cadata=self._ca_der)
        return ctx


# -- private helpers -------------------------------------------------------------------------


def _csr_public_key(csr_der: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The public key of an acceptable CSR.

    Raises:
        AuthError: the CSR is too large, does not parse, is not signed by its own key, or
            carries a weak or unsupported key.
    """
    if len(csr_der) > MAX_CSR_BYTES:
        raise AuthError(f"CSR of {len(csr_der)} bytes is too large")
    try:
        csr = x509.load_der_x509_csr(csr_der)
    except ValueError as exc:
        raise AuthError("CSR is not a DER-encoded certificate request") from exc
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise AuthError("CSR signature cannot be checked") from exc
    if not signature_ok:
        raise AuthError("CSR signature is invalid")
    public_key = csr.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.key_size < 256:
            raise AuthError(f"CSR key curve {public_key.curve.name} is too weak")
    elif isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise AuthError(f"CSR RSA key of {public_key.key_size} bits is too weak")
    else:
        raise AuthError("CSR key must be ECDSA or RSA")
    return public_key


def _check_san(addr: str) -> None:
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


def _leaf_key_usage(*, rsa_key: bool = False) -> x509.KeyUsage:
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


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename: never a half-written file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it further than we asked
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    if path.exists():
        return path.read_text().strip()
    value = make()
    _write_atomic(path, (value + "\n").encode(), mode=0o600)
    logger.info("created %s", path)
    return value


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is not an ECDSA key")
    return key


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM certificate") from exc


def _load_or_create_ca(
    data_dir: Path,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = data_dir / CA_CERT_FILE, data_dir / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        cert, key = _load_cert(cert_path), _load_ec_key(key_path)
        if cert.public_key() != key.public_key():
            raise ConfigError(f"{cert_path} and {key_path} do not belong together")
        return cert, key
    if cert_path.exists() or key_path.exists():
        present = cert_path if cert_path.exists() else key_path
        raise ConfigError(f"{present} exists without its pair; restore it or remove it")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgebridge"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"edgebridge-ca-{secrets.token_hex(4)}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a crash between the two writes leaves a lone key, which is refused loudly
    # above rather than silently replaced (that would orphan every issued certificate).
    _write_atomic(key_path, _key_pem(key), mode=0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    logger.info("created a new CA in %s", data_dir)
    return cert, key


def _server_cert_current(
    data_dir: Path, ca_cert: x509.Certificate, wanted: set[str]
) -> tuple[bool, str]:
    cert_path, key_path = data_dir / SERVER_CERT_FILE, data_dir / SERVER_KEY_FILE
    if not cert_path.exists() or not key_path.exists():
        return False, "missing"
    try:
        cert, key = _load_cert(cert_path), _load_ec_key(key_path)
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


def _ensure_server_cert(
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
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_san_entries(sans)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_atomic(data_dir / SERVER_KEY_FILE, _key_pem(key), mode=0o600)
    _write_atomic(
        data_dir / SERVER_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), mode=0o644
    )
    logger.info("issued the server certificate (%s) for %s", why, ", ".join(sorted(sans)))
