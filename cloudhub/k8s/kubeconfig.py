"""Where the cluster is and how to authenticate: a kubeconfig, ``$KUBECONFIG``, or in-cluster.

Why our own reader: the official client's loader imports the whole generated client (about
20 MB of RSS for a thousand model classes cloudhub never uses). The common cases are read
here: one file, its current context, a server with a CA (file or data) or
``insecure-skip-tls-verify``, a client certificate (file or data), a token or token file;
and the in-cluster service account. Anything else a kubeconfig can say (exec plugins,
auth providers, several files in ``$KUBECONFIG``) is handed to the official loader, imported
only then, so those setups keep working at the old cost.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wire.errors import ConfigError

#: the service account files a pod is given
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: seconds a token read from a file is used before it is read again (kubelet rotates them)
TOKEN_REREAD = 60.0
#: user entries this reader understands; any other key sends the file to the official loader
_PLAIN_USER_KEYS = frozenset(
    {
        "token",
        "tokenFile",
        "client-certificate",
        "client-certificate-data",
        "client-key",
        "client-key-data",
    }
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a connection needs: the server's base URL, TLS, and the bearer token (if any)."""

    host: str
    #: None for plain HTTP
    ssl: ssl.SSLContext | None
    #: the current bearer token (may read a file or refresh), or None
    token: Callable[[], str | None]
    #: an HTTP(S) proxy to go through (the cluster's ``proxy-url``)
    proxy: str | None = None
    #: the name to expect in the server's certificate, if not the host's (``tls-server-name``)
    server_name: str | None = None


def load_credentials(
    kubeconfig: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Credentials:
    """Credentials from ``kubeconfig``, else ``$KUBECONFIG``, else the in-cluster account.

    Raises:
        ConfigError: one line saying which source failed and why.
    """
    env = os.environ if environ is None else environ
    source = str(kubeconfig) if kubeconfig is not None else (env.get("KUBECONFIG") or None)
    try:
        if source is None:
            return _in_cluster(env)
        if os.pathsep in source:
            return _official(source)
        return _from_file(Path(source))
    except ConfigError:
        raise
    except (OSError, ValueError, TypeError, KeyError, StopIteration, yaml.YAMLError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if source is None:
            raise ConfigError(
                "no kubeconfig given, KUBECONFIG unset, and no in-cluster service account: "
                f"{reason}"
            ) from exc
        raise ConfigError(f"cannot use kubeconfig {source}: {reason}") from exc


def _from_file(path: Path) -> Credentials:
    conf = yaml.safe_load(path.read_text())
    if not isinstance(conf, dict):
        raise ValueError("not a kubeconfig (no mapping at the top)")
    current = conf.get("current-context")
    if not current:
        raise ValueError("no current-context")
    context = _named(conf, "contexts", current, "context")
    cluster = _named(conf, "clusters", context.get("cluster"), "cluster")
    user = _named(conf, "users", context.get("user"), "user") if context.get("user") else {}
    if any(key not in _PLAIN_USER_KEYS for key in user):
        return _official(str(path))
    base = path.parent
    server = str(cluster.get("server") or "")
    if not server:
        raise ValueError(f"cluster {context.get('cluster')!r} has no server")
    context_ssl: ssl.SSLContext | None = None
    if server.startswith("https://"):
        context_ssl = _ssl_context(
            ca=_material(cluster, "certificate-authority", base),
            cert=_material(user, "client-certificate", base),
            key=_material(user, "client-key", base),
            verify=not cluster.get("insecure-skip-tls-verify", False),
        )
    token: Callable[[], str | None]
    if user.get("token"):
        fixed = str(user["token"])
        token = lambda: fixed  # noqa: E731 - a constant source
    elif user.get("tokenFile"):
        token = _TokenFile(base / user["tokenFile"])
    else:
        token = lambda: None  # noqa: E731
    return Credentials(
        server.rstrip("/"),
        context_ssl,
        token,
        proxy=cluster.get("proxy-url") or None,
        server_name=cluster.get("tls-server-name") or None,
    )


def _in_cluster(env: Mapping[str, str]) -> Credentials:
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ValueError("KUBERNETES_SERVICE_HOST/PORT are not set")
    token_file = SERVICE_ACCOUNT / "token"
    token = _TokenFile(token_file)
    if not token():
        raise ValueError(f"{token_file} is empty")
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    context = _ssl_context(
        ca=(SERVICE_ACCOUNT / "ca.crt").read_bytes(), cert=None, key=None, verify=True
    )
    return Credentials(f"https://{host}:{port}", context, token)


def _official(source: str) -> Credentials:
    """Through the official loader (exec plugins, auth providers, merged files)."""
    from kubernetes import client as k8s_client  # imported only for these setups
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=source, client_configuration=configuration, persist_config=False
        )
    except ConfigException as exc:
        raise ValueError(str(exc)) from exc
    context: ssl.SSLContext | None = None
    host = str(configuration.host).rstrip("/")
    if host.startswith("https://"):
        ca = Path(configuration.ssl_ca_cert).read_bytes() if configuration.ssl_ca_cert else None
        cert = Path(configuration.cert_file).read_bytes() if configuration.cert_file else None
        key = Path(configuration.key_file).read_bytes() if configuration.key_file else None
        context = _ssl_context(ca=ca, cert=cert, key=key, verify=bool(configuration.verify_ssl))

    def token() -> str | None:
        # auth_settings() runs the configuration's refresh hook (exec plugins' expiring tokens)
        auth: Any = configuration.auth_settings().get("BearerToken") or {}
        value = str(auth.get("value") or "")
        return value.removeprefix("Bearer ").strip() or None

    proxy = getattr(configuration, "proxy", None) or None
    server_name = getattr(configuration, "tls_server_name", None) or None
    return Credentials(host, context, token, proxy=proxy, server_name=server_name)


class _TokenFile:
    """A token read from a file, read again every :data:`TOKEN_REREAD` seconds."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._token: str | None = None
        self._read_at = -TOKEN_REREAD

    def __call__(self) -> str | None:
        now = time.monotonic()
        if now - self._read_at >= TOKEN_REREAD:
            self._token = self._path.read_text().strip() or None
            self._read_at = now
        return self._token


def _named(conf: dict[str, Any], section: str, name: Any, field: str) -> dict[str, Any]:
    for entry in conf.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(field) or {}
            if not isinstance(value, dict):
                raise ValueError(f"{section} entry {name!r} is not a mapping")
            return value
    raise ValueError(f"no {section[:-1]} named {name!r}")


def _material(section: dict[str, Any], key: str, base: Path) -> bytes | None:
    """PEM bytes from ``key-data`` (base64) or the file ``key`` (relative to the kubeconfig)."""
    data = section.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"{key}-data is not base64") from exc
    if section.get(key):
        return (base / str(section[key])).read_bytes()
    return None


def _ssl_context(
    *, ca: bytes | None, cert: bytes | None, key: bytes | None, verify: bool
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca is not None:
        context.load_verify_locations(cadata=ca.decode())
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        if key is None:
            raise ValueError("a client certificate without its key")
        # load_cert_chain reads files only: a private temporary directory, removed at once
        with tempfile.TemporaryDirectory(prefix="edgebridge-kube-") as tmp:
            cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            for path, material in ((cert_path, cert), (key_path, key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with contextlib.closing(os.fdopen(fd, "wb")) as out:
                    out.write(material)
            context.load_cert_chain(cert_path, key_path)
    return context
