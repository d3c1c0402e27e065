"""A simulated edge (:class:`SimEdge`): the edge's half of the protocol over mutual TLS, with
certificates minted straight from the cloud CA (:class:`CertMinter`), and helpers to connect
and keep alive a whole fleet of them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
import random
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

import pydantic_core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

log = logging.getLogger(__name__)

#: node certificates carry this CN prefix and organisation (see cloudhub.pki)
NODE_CN_PREFIX = "system:node:"
NODE_ORGANIZATION = "system:nodes"
#: the header our edgecore announces its heartbeat in (cloudhub.hub.handshake)
HEARTBEAT_HEADER = "edgebridge-heartbeat"
#: operations that carry an object to the edge and must be ACKed
OBJECT_OPS = frozenset({"insert", "update", "patch", "delete"})
#: KubeEdge's edge heartbeat; what the brief's simulated edges announce
DEFAULT_HEARTBEAT = 15.0


# -- certificates -----------------------------------------------------------------------------


class CertMinter:
    """Signs bench certificates directly with the cloud CA's key (``ca.key`` in the data dir).

    Node certificates look like the ones cloudhub issues at join time (``CN=system:node:NAME,
    O=system:nodes``, clientAuth). One EC key is shared by every node: generating 10,000 keys
    would dominate the set-up time and says nothing about cloudhub.
    """

    def __init__(self, *, data_dir: Path, out_dir: Path) -> None:
        self.ca_path = data_dir / "ca.crt"
        self._ca_cert = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
        ca_key = serialization.load_pem_private_key(
            (data_dir / "ca.key").read_bytes(), password=None
        )
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise RuntimeError("ca.key is not an ECDSA key")
        self._ca_key = ca_key
        self._ca_pem = self.ca_path.read_bytes()
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.key_path = out_dir / f"shared-{os.getpid()}.key"
        self.key_path.write_bytes(
            self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self._aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def _cert(
        self, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> bytes:
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._ca_cert.subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(self._aki, critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM)

    def node_cert_path(self, node: str) -> Path:
        """Mint (once) the node's certificate file; returns its path."""
        path = self.out_dir / f"{node}.crt"
        if not path.exists():
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODE_ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, NODE_CN_PREFIX + node),
                ]
            )
            path.write_bytes(self._cert(subject, ExtendedKeyUsageOID.CLIENT_AUTH, []))
        return path

    def client_context(self, node: str) -> ssl.SSLContext:
        """A TLS client context presenting ``node``'s certificate and trusting only the CA."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self._ca_pem.decode())
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.node_cert_path(node)), str(self.key_path))
        return ctx

    def server_context(self, *, require_client_cert: bool = True) -> ssl.SSLContext:
        """A TLS server context like cloudhub's wss port: ECDSA P-256, client certs required."""
        path = self.out_dir / "echo-server.crt"
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-echo")])
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        path.write_bytes(self._cert(subject, ExtendedKeyUsageOID.SERVER_AUTH, sans))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(path), str(self.key_path))
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=self._ca_pem.decode())
        return ctx


# -- a simulated edge -------------------------------------------------------------------------

#: ``on_object(edge, operation, key, resourceVersion, content, receive_time)``, called after the
#: edge updated its inventory and before it ACKs (as a real edge persists, then ACKs).
ObjectHook = Callable[["SimEdge", str, str, str, Any, float], None]
#: ``on_acked(edge, operation, key, content, ack_time)``, called once the ACK is written.
AckHook = Callable[["SimEdge", str, str, Any, float], None]


def encode_frame(operation: str, resource: str, content: Any, *, parent: str = "") -> str:
    # Hand-built rather than via wire.messages: thousands of simulated edges share the machine
    # with cloudhub, and a pydantic round trip per ACK would measure the client, not the hub.
    # The field names and shape are exactly wire.messages.Message's.
    return json.dumps(
        {
            "header": {
                "msg_id": str(uuid.uuid4()),
                "parent_msg_id": parent,
                "timestamp": int(time.time() * 1000),
                "resourceversion": "",
                "sync": False,
                "type": "",
            },
            "route": {
                "source": "edgehub",
                "destination": "",
                "group": "resource",
                "operation": operation,
                "resource": resource,
            },
            "content": content,
        },
        separators=(",", ":"),
    )


#: :func:`encode_frame` of ``("response", resource, "OK", parent=parent)`` as a text template:
#: msg_id, parent_msg_id (JSON text), timestamp (ms), resource (JSON text). Same keys in the
#: same order and the same compact separators, so the hub receives the same bytes' shape.
_ACK_FORMAT = (
    '{"header":{"msg_id":"%s","parent_msg_id":%s,"timestamp":%d,"resourceversion":"",'
    '"sync":false,"type":""},"route":{"source":"edgehub","destination":"","group":"resource",'
    '"operation":"response","resource":%s},"content":"OK"}'
)


def encode_ack(msg_id: str, resource: str, parent: str) -> str:
    """What ``encode_frame("response", resource, "OK", parent=parent)`` gives, with the given
    ``msg_id``, for a fraction of its cost.

    Why: every simulated edge ACKs every object, and the edges share the 2-core machine with
    the hub under test; ``json.dumps`` of a fresh dict plus a ``uuid4`` (an ``os.urandom``
    call) per ACK is CPU taken from the hub. ``msg_id`` must be plain (no characters JSON
    would escape), as :meth:`SimEdge.next_msg_id`'s are.
    """
    return _ACK_FORMAT % (
        msg_id,
        encode_basestring_ascii(parent),
        int(time.time() * 1000),
        encode_basestring_ascii(resource),
    )


class SimEdge:
    """One simulated edge node: the edge's half of the protocol, and counters.

    ``inventory`` is what a real edge would have persisted (key -> resourceVersion); it
    survives :meth:`close` so a later :meth:`connect` can state it, as a restarted edgecore
    states what is in its SQLite cache.
    """

    def __init__(
        self,
        *,
        node: str,
        url: str,
        ssl_context: ssl.SSLContext,
        heartbeat: float = DEFAULT_HEARTBEAT,
        on_object: ObjectHook | None = None,
        on_acked: AckHook | None = None,
        keep_objects: bool = False,
        ack_delay: float = 0.0,
    ) -> None:
        """
        Args:
            ack_delay: seconds to wait before each ACK, standing in for a WAN round trip and
                the edge's own persisting (on loopback an ACK takes well under 1 ms, which a
                real fleet never sees). Messages are handled one at a time, as an edge does.
        """
        self.node = node
        self.ack_delay = ack_delay
        self.url = url
        self.ssl = ssl_context
        self.heartbeat = heartbeat
        self.on_object = on_object
        self.on_acked = on_acked
        self.keep_objects = keep_objects
        self.inventory: dict[str, str] = {}
        self.objects: dict[str, Any] = {}
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        #: object messages received / ACKed, per operation; reset with :meth:`reset_counts`
        self.received: dict[str, int] = {}
        self.acked = 0
        self.bytes_received = 0
        self.errors: list[str] = []
        self.last_rx = 0.0
        self.connected_at = 0.0
        self.synced_at = 0.0
        self.next_keepalive = 0.0
        self.close_reason = ""
        # ACK ids: a random UUIDv4's first 24 characters per edge, then a 12-hex-digit counter,
        # so they are unique, UUID-shaped (as wire.messages' are) and cost no os.urandom each
        self._msg_id_prefix = str(uuid.uuid4())[:24]
        self._msg_seq = 0

    def next_msg_id(self) -> str:
        """A fresh msg_id for a frame this edge sends."""
        self._msg_seq += 1
        return f"{self._msg_id_prefix}{self._msg_seq:012x}"

    @property
    def node_key(self) -> str:
        return f"null/node/{self.node}"

    @property
    def open(self) -> bool:
        return self._reader is not None and not self._reader.done()

    def reset_counts(self) -> None:
        self.received = {}
        self.acked = 0
        self.bytes_received = 0

    def messages(self) -> int:
        return sum(self.received.values())

    async def connect(self, *, send_inventory: bool = True, open_timeout: float = 60.0) -> None:
        """Open the link and state the inventory (unless ``send_inventory`` is false, as a
        stock KubeEdge edgecore would). Starts the reader task.

        Raises:
            OSError, TimeoutError, websockets.exceptions.InvalidHandshake: could not connect.
        """
        ws = await connect(
            self.url,
            ssl=self.ssl,
            additional_headers={
                "node_id": self.node,
                "project_id": "bench",
                HEARTBEAT_HEADER: str(self.heartbeat),
            },
            compression=None,
            ping_interval=None,
            max_size=8 * 1024 * 1024,
            open_timeout=open_timeout,
            close_timeout=1.0,
        )
        self.ws = ws
        self.close_reason = ""
        now = time.time()
        self.connected_at = now
        self.last_rx = now
        self.next_keepalive = time.monotonic() + self.heartbeat * random.uniform(0.5, 1.0)
        if send_inventory:
            await ws.send(encode_frame("inventory", self.node_key, dict(self.inventory)))
        self._reader = asyncio.get_running_loop().create_task(
            self._read(ws), name=f"edge:{self.node}"
        )

    async def keepalive(self) -> None:
        """Send one keepalive (the cloud answers with a ``response``)."""
        if self.ws is not None and self.open:
            self.next_keepalive = time.monotonic() + self.heartbeat
            with contextlib.suppress(ConnectionClosed, OSError):
                await self.ws.send(encode_frame("keepalive", "node", "ping"))

    async def close(self) -> None:
        """Drop the link (abort, like an edge losing power; nothing to flush)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self.ws is not None:
            self.ws.transport.abort()
            self.ws = None
        self.close_reason = self.close_reason or "closed by bench"

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                now = time.time()
                self.last_rx = now
                # pydantic's parser, as edgecore's own decoder (wire.codec.decode) uses: about
                # 40 % less CPU than json.loads for a pod frame.
                msg = pydantic_core.from_json(frame)
                route = msg["route"]
                op = route["operation"]
                if op not in OBJECT_OPS:
                    if op == "error":
                        self.errors.append(str(msg.get("content")))
                    continue  # keepalive answers and other responses need nothing
                self.bytes_received += len(frame)
                header = msg["header"]
                key = route["resource"]
                rv = header.get("resourceversion", "")
                content = msg.get("content")
                if op == "delete":
                    self.inventory.pop(key, None)
                    self.objects.pop(key, None)
                else:
                    self.inventory[key] = rv
                    if self.keep_objects:
                        self.objects[key] = content
                if key == self.node_key and not self.synced_at:
                    self.synced_at = now
                self.received[op] = self.received.get(op, 0) + 1
                if self.on_object is not None:
                    self.on_object(self, op, key, rv, content, now)
                if self.ack_delay:
                    await asyncio.sleep(self.ack_delay)
                await ws.send(encode_ack(self.next_msg_id(), key, header["msg_id"]))
                self.acked += 1
                if self.on_acked is not None:
                    self.on_acked(self, op, key, content, time.time())
        except ConnectionClosed as exc:
            self.close_reason = f"connection closed: {exc}"
        except OSError as exc:
            self.close_reason = f"{type(exc).__name__}: {exc}"


async def keepalive_loop(edges: Callable[[], Iterable[SimEdge]], *, tick: float = 1.0) -> None:
    """Send each open edge's keepalive when due; one task for all of them (cheaper than one
    sleeping task per edge). Runs until cancelled."""
    while True:
        now = time.monotonic()
        for edge in list(edges()):
            if edge.open and edge.next_keepalive <= now:
                await edge.keepalive()
        await asyncio.sleep(tick)


async def connect_all(
    edges: Sequence[SimEdge],
    *,
    concurrency: int,
    attempts: int = 5,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int, list[str]]:
    """Connect every edge with at most ``concurrency`` handshakes in flight, retrying each up
    to ``attempts`` times. Returns ``(connected, failed, sample of error texts)``."""
    sem = asyncio.Semaphore(max(1, concurrency))
    ok = 0
    failed = 0
    errors: list[str] = []

    async def one(edge: SimEdge) -> None:
        nonlocal ok, failed
        delay = 0.5
        for attempt in range(attempts):
            async with sem:
                try:
                    await edge.connect()
                except Exception as exc:
                    if len(errors) < 20:
                        errors.append(
                            f"{edge.node} attempt {attempt + 1}: {type(exc).__name__}: {exc}"
                        )
                else:
                    ok += 1
                    if on_progress is not None:
                        on_progress(ok, failed)
                    return
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 8.0)
        failed += 1

    await asyncio.gather(*(one(e) for e in edges))
    return ok, failed, errors
