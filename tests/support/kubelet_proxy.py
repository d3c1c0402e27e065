"""The API server's leg of ``kubectl logs`` and ``kubectl exec``, for the emulator.

A real API server answers ``pods/{name}/log`` and ``pods/{name}/exec`` by calling the pod's
node's kubelet: at the Node's preferred address (``--kubelet-preferred-address-types``,
default Hostname, InternalDNS, InternalIP, ExternalDNS, ExternalIP) and
``status.daemonEndpoints.kubeletEndpoint.Port``, over TLS with its kubelet client certificate,
without checking the kubelet's serving certificate (no ``--kubelet-certificate-authority``).
Logs are plain HTTP; exec is a websocket in ``v5``/``v4.channel.k8s.io``, passed through as
API servers from 1.36 do for kubelets that speak websockets (older ones translate to SPDY).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PREFERRED = ("Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP")


class KubeletUnreachable(Exception):
    """The pod has no node, or its Node names no kubelet endpoint."""


def kubelet_base(node: dict[str, Any]) -> str:
    """``https://ADDR:PORT`` of a Node's kubelet, as the API server picks it.

    Raises:
        KubeletUnreachable: no address or no port on the Node.
    """
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    address = next((addresses[t] for t in PREFERRED if addresses.get(t)), None)
    if not port or not address:
        raise KubeletUnreachable(f"node {node['metadata']['name']} names no kubelet endpoint")
    return f"https://{address}:{port}"


def client_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def proxy(
    request: web.Request,
    *,
    pod: dict[str, Any],
    node: dict[str, Any],
    sub: str,
    ctx: ssl.SSLContext,
) -> web.StreamResponse:
    """Relay ``pods/{name}/{sub}`` (``log`` or ``exec``) to the pod's kubelet."""
    meta = pod["metadata"]
    query = [(k, v) for k, v in request.query.items() if k != "container"]
    container = request.query.get("container") or pod["spec"]["containers"][0]["name"]
    base = kubelet_base(node)
    ns, name = meta.get("namespace", "default"), meta["name"]
    if sub == "log":
        url = f"{base}/containerLogs/{ns}/{name}/{container}?{urllib.parse.urlencode(query)}"
        return await _logs(request, url, ctx)
    url = f"{base}/exec/{ns}/{name}/{container}?{urllib.parse.urlencode(query)}"
    return await _exec(request, url, ctx)


async def _logs(request: web.Request, url: str, ctx: ssl.SSLContext) -> web.StreamResponse:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=ctx) as upstream:
        response = web.StreamResponse(status=upstream.status)
        response.content_type = "text/plain"
        await response.prepare(request)
        async for data in upstream.content.iter_any():
            await response.write(data)
        await response.write_eof()
        return response


async def _exec(request: web.Request, url: str, ctx: ssl.SSLContext) -> web.StreamResponse:
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, ssl=ctx, protocols=[p for p in offered if p]) as upstream,
    ):
        ws = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else [])
        await ws.prepare(request)

        async def down() -> None:
            async for msg in upstream:
                if msg.type == WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
            await ws.close()

        task = asyncio.create_task(down())
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await upstream.send_bytes(msg.data)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return ws


def make_client_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA of the API server's kubelet client and a certificate it signed: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kubeadm:cluster-admins"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "kube-ca.crt", tmp / "client.crt", tmp / "client.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths
