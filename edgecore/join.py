"""``edgecore join``: trade a join token for a node certificate, KubeEdge's way.

1. Fetch ``https://HOST:CERT_PORT/ca.crt`` *without* verifying TLS: we have no CA yet.
2. Pin it: its SHA-256 must equal the token's ``{ca-hash}`` prefix. From here on, a man in the
   middle would need the real CA's key, so the unverified first step costs nothing.
3. Make a P-256 key and a CSR, and send ``GET /edge.crt`` (``Authorization: Bearer JWT``,
   ``NodeName`` header, DER CSR body) over TLS verified against the pinned CA.
4. Check the answer (signed by the pinned CA, for our key) and write ``ca.crt``, ``node.key``
   (0600), ``node.crt`` and ``edgecore.yaml`` into the data dir (0700).

Every failure is one line naming the cause: wrong hash, expired/forged/used-up token (the
cloud's own reason), an unreachable cloud, or a server certificate that does not name the
address dialled (the classic KubeEdge join failure; fixed with ``cloudhub --advertise-address``).

**Re-joining keeps everything but the credentials.** An edge whose certificate expired while
it was offline (or was revoked) runs ``edgecore join`` again with a new token, into the same
data dir, with or without ``edgecore run`` still going. Only ``ca.crt``, ``node.key`` and
``node.crt`` are replaced (key and certificate in one step, see
:mod:`edgecore.credentials`); ``edgecore.db`` (the cache and the queued upstream
updates) is never touched, and an existing ``edgecore.yaml`` keeps its settings except the
cloud address. A running edgecore picks the new certificate up at its next connection attempt.
A data dir that belongs to another node is refused: its cache is that node's.

The token is a credential: it is never logged and never written to disk.

This module cannot import cloudhub (the two sides are independent packages), so the few lines
that make a key and CSR live here too.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import ssl
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgecore import config
from edgecore.certmanager.keys import make_key_and_csr, write_pair
from edgecore.config import EdgeSettings, HubSettings
from hive.files import write_atomic
from wire.errors import ConfigError, TokenError

logger = logging.getLogger(__name__)

DEFAULT_WS_PORT = 10000
DEFAULT_CERT_PORT = 10002
#: Seconds allowed for each HTTPS request of the join (connect + answer).
DEFAULT_TIMEOUT = 15.0
#: Seconds the websocket port has to answer (or refuse) a request without a client
#: certificate once TLS is up: the HTTPS port answers within milliseconds
_ANSWER_WAIT = 2.0


def parse_cloud(cloud: str) -> tuple[str, int]:
    """``HOST[:WS_PORT]`` -> ``(host, ws_port)``; IPv6 literals as ``[::1]:10000`` or ``::1``.

    Raises:
        ConfigError: empty host, a URL instead of an address, or a bad port.
    """
    text = cloud.strip()
    if not text or "://" in text or "/" in text:
        raise ConfigError(f"--cloud must be HOST[:PORT], not {cloud!r}")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"--cloud {cloud!r}: unclosed '[' in IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"--cloud must be HOST[:PORT], not {cloud!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        host = text  # a bare IPv6 address
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ConfigError(f"--cloud {cloud!r} is not HOST[:PORT]") from exc
    if not host:
        raise ConfigError(f"--cloud {cloud!r} has no host")
    if not port_text:
        return host, DEFAULT_WS_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"--cloud {cloud!r}: port must be 1-65535")
    return host, int(port_text)


def split_token(token: str) -> tuple[str, str]:
    """``{ca-hash}.{jwt}`` -> ``(ca_hash, jwt)``.

    Raises:
        TokenError: not 64 hex characters followed by a three-part JWT.
    """
    parts = token.strip().split(".")
    ca_hash = parts[0].lower()
    if (
        len(parts) != 4
        or len(ca_hash) != 64
        or any(c not in "0123456789abcdef" for c in ca_hash)
        or not all(parts[1:])
    ):
        raise TokenError("malformed token: expected {ca-hash}.{jwt}")
    return ca_hash, ".".join(parts[1:])


def _url(host: str, port: int, path: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}{path}"


async def join(
    *,
    cloud: str,
    token: str,
    node_name: str,
    cert_port: int = DEFAULT_CERT_PORT,
    data_dir: Path,
    request_timeout: float = DEFAULT_TIMEOUT,
) -> EdgeSettings:
    """Join ``cloud`` as ``node_name``; write credentials and ``edgecore.yaml`` to ``data_dir``.

    Args:
        cloud: ``HOST[:WS_PORT]`` (ws port defaults to 10000).
        token: ``{ca-hash}.{jwt}`` from ``edgectl token create``.
        node_name: the node's name (a DNS-1123 subdomain).
        cert_port: cloudhub's HTTPS port.
        data_dir: where to write ``ca.crt``, ``node.key``, ``node.crt``, ``edgecore.yaml``.
        request_timeout: seconds per HTTPS request.

    Returns:
        The settings written to ``edgecore.yaml``.

    Raises:
        TokenError: malformed token, CA hash mismatch, or the cloud refused the token.
        ConfigError: bad arguments, unreachable cloud, TLS failure, unexpected answer, or a
            data dir that cannot be written.
    """
    host, ws_port = parse_cloud(cloud)
    if not 0 < cert_port < 65536:
        raise ConfigError(f"--cert-port must be 1-65535, not {cert_port}")
    if not _is_node_name(node_name):
        raise ConfigError(
            f"invalid node name {node_name!r}: use lowercase letters, digits, '-' and '.'"
        )
    ca_hash, bare_jwt = split_token(token)
    _check_writable(_absolute(data_dir))
    existing = _existing_settings(_absolute(data_dir), node_name)

    client_timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        ca_der = await _fetch_ca(session, host, cert_port)
        if hashlib.sha256(ca_der).hexdigest() != ca_hash:
            raise TokenError("CA certificate hash does not match the token")
        try:
            ca_cert = x509.load_der_x509_certificate(ca_der)
        except ValueError as exc:
            raise ConfigError(
                f"{_url(host, cert_port, '/ca.crt')} did not send a DER cert"
            ) from exc
        # Before the certificate request, so a wrong --cloud port spends no use of the token.
        await check_ws_port(host, ws_port, ca_der=ca_der, timeout=request_timeout)
        key, csr_der = make_key_and_csr(node_name)
        cert_der = await _fetch_cert(
            session, host, cert_port, ca_der=ca_der, jwt=bare_jwt, node=node_name, csr=csr_der
        )
    cert = _check_cert(cert_der, ca_cert, key)

    if existing is not None:
        settings = existing.model_copy(deep=True)
        settings.hub.cloud_host, settings.hub.ws_port = host, ws_port
        settings.hub.cert_port = cert_port
        settings.data_dir = _absolute(data_dir)
    else:
        settings = EdgeSettings(
            node_name=node_name,
            data_dir=_absolute(data_dir),
            hub=HubSettings(cloud_host=host, ws_port=ws_port, cert_port=cert_port),
        )
    try:
        await asyncio.to_thread(_write_files, settings, ca_cert, key, cert)
    except OSError as exc:
        raise ConfigError(f"cannot write to {data_dir}: {exc}") from exc
    logger.info(
        "%s %s as node %s; credentials in %s",
        "re-joined" if existing is not None else "joined",
        host,
        node_name,
        settings.data_dir,
    )
    return settings


def _existing_settings(data_dir: Path, node_name: str) -> EdgeSettings | None:
    """The settings of an earlier join into ``data_dir``, or None for a fresh dir.

    Raises:
        ConfigError: the dir belongs to another node, or its edgecore.yaml is unreadable.
    """
    path = data_dir / config.CONFIG_FILE
    if not path.exists():
        return None
    existing = config.load(path)
    if existing.node_name != node_name:
        raise ConfigError(
            f"{data_dir} belongs to node {existing.node_name!r} (its cache is that node's): "
            f"re-join as {existing.node_name!r}, or use another --data-dir for {node_name!r}"
        )
    return existing


def _check_writable(data_dir: Path) -> None:
    """Fail before the cloud is asked (and a token use spent) when the credentials could not
    be written: the data dir, or the nearest directory above it that exists, must be a
    directory this process may write.

    Raises:
        ConfigError: naming the path in the way.
    """
    path = data_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    if not path.is_dir():
        raise ConfigError(f"cannot use data dir {data_dir}: {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot use data dir {data_dir}: {path} is not writable")


def _absolute(path: Path) -> Path:
    # Absolute, so `edgecore run` finds its files from any working directory; no symlink
    # resolution (a user who points at a symlinked dir means that path).
    return Path(os.path.abspath(path))


def _is_node_name(name: str) -> bool:
    if not 0 < len(name) <= 253:
        return False
    for label in name.split("."):
        if not label or label[0] == "-" or label[-1] == "-":
            return False
        if any(not (c.isascii() and (c.islower() or c.isdigit() or c == "-")) for c in label):
            return False
    return True


async def _fetch_ca(session: aiohttp.ClientSession, host: str, port: int) -> bytes:
    url = _url(host, port, "/ca.crt")
    try:
        # Unverified on purpose: the CA is checked against the token's hash right after.
        async with session.get(url, ssl=False) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ConfigError(f"{url} answered HTTP {resp.status}")
            return body
    except aiohttp.ClientError as exc:
        raise ConfigError(f"cannot reach cloudhub at {url}: {_reason(exc)}") from exc
    except TimeoutError as exc:
        raise ConfigError(f"cannot reach cloudhub at {url}: timed out") from exc


async def _fetch_cert(
    session: aiohttp.ClientSession,
    host: str,
    port: int,
    *,
    ca_der: bytes,
    jwt: str,
    node: str,
    csr: bytes,
) -> bytes:
    url = _url(host, port, "/edge.crt")
    ctx = ssl.create_default_context(cadata=ca_der)
    headers = {
        "Authorization": f"Bearer {jwt}",
        "NodeName": node,
        "Content-Type": "application/octet-stream",
    }
    try:
        async with session.get(url, data=csr, headers=headers, ssl=ctx) as resp:
            body = await resp.read()
            if resp.status == 200:
                return body
            reason = body.decode(errors="replace").strip().splitlines()
            why = reason[0] if reason else f"HTTP {resp.status}"
            if resp.status == 401:
                raise TokenError(f"cloudhub refused the token: {why}")
            raise ConfigError(f"cloudhub refused the certificate request: {why}")
    except aiohttp.ClientConnectorCertificateError as exc:
        cert_error = exc.certificate_error
        if isinstance(cert_error, ssl.SSLCertVerificationError) and "match" in str(cert_error):
            raise ConfigError(
                f"cloudhub's certificate does not name {host!r}: restart cloudhub with "
                f"--advertise-address {host}"
            ) from exc
        raise ConfigError(f"TLS verification of {url} failed: {_reason(exc)}") from exc
    except aiohttp.ClientError as exc:
        raise ConfigError(f"cannot reach cloudhub at {url}: {_reason(exc)}") from exc
    except TimeoutError as exc:
        raise ConfigError(f"cannot reach cloudhub at {url}: timed out") from exc


async def check_ws_port(host: str, port: int, *, ca_der: bytes, timeout: float) -> None:
    """Check that ``host:port`` is this cloud's websocket port: it answers TLS with a
    certificate of the pinned CA, and (unlike cloudhub's HTTPS port, which has the same
    certificate) it insists on a client certificate before it answers anything.

    Raises:
        ConfigError: nothing answers there, it is not TLS, another CA's certificate, or it
            answers HTTPS requests without a client certificate (the HTTPS port).
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    hint = f"check the port in --cloud {where} (cloudhub's --ws-port, default {DEFAULT_WS_PORT})"
    ctx = ssl.create_default_context(cadata=ca_der)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
            except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError) as exc:
                raise ConfigError(f"the websocket port {where} does not speak TLS: {hint}") from exc
        # TLS 1.3 finishes the client's handshake before the server has looked at our
        # (absent) certificate: the refusal arrives with the first read. Silence is a
        # refusal too (a proxy in the path may keep our side open): only the HTTPS port
        # answers a request without a client certificate.
        writer.write(b"GET / HTTP/1.1\r\nHost: edgebridge-join\r\n\r\n")
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.read(16), _ANSWER_WAIT)
        except TimeoutError:
            return
    except ssl.SSLCertVerificationError as exc:
        if "match" in str(exc):
            raise ConfigError(
                f"cloudhub's certificate does not name {host!r}: restart cloudhub with "
                f"--advertise-address {host}"
            ) from exc
        raise ConfigError(
            f"the websocket port {where} does not present this cloud's certificate "
            f"({exc.verify_message}): {hint}"
        ) from exc
    except ssl.SSLError as exc:
        if "ALERT" in (exc.reason or "").upper():
            return  # our CA's server, refusing a client without a certificate: the edge port
        raise ConfigError(f"the websocket port {where} does not speak TLS: {hint}") from exc
    except TimeoutError as exc:
        raise ConfigError(f"the websocket port {where} did not answer in time: {hint}") from exc
    except (ConnectionResetError, BrokenPipeError):
        return  # after the handshake: the same refusal, as a reset
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"cannot reach the websocket port {where}: {why}: {hint}") from exc
    finally:
        if writer is not None:
            writer.close()
    if answer.startswith(b"HTTP/"):
        raise ConfigError(
            f"{where} is cloudhub's HTTPS port (it answers without a client certificate), "
            f"not its websocket port: {hint}"
        )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        # asyncio's strerror is "Connect call failed (addr)": the errno says it plainly
        return os.strerror(err.errno) if err.errno else err.strerror or str(err)
    return str(exc) or type(exc).__name__


def _check_cert(
    cert_der: bytes, ca_cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    """The issued certificate must be from the pinned CA and for the key we just made."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigError("cloudhub answered with a certificate not signed by its CA") from exc
    if cert.public_key() != key.public_key():
        raise ConfigError("cloudhub answered with a certificate for another key")
    return cert


def _write_files(
    settings: EdgeSettings,
    ca_cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
) -> None:
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    pem = serialization.Encoding.PEM
    write_atomic(settings.ca_path, ca_cert.public_bytes(pem), mode=0o644)
    # Key and certificate together: never one without the other, even across a crash.
    write_pair(settings, key, cert)
    config.save(settings, settings.data_dir / config.CONFIG_FILE)
