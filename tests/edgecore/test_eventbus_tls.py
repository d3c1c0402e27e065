"""External mode over TLS (``mqtts://``): the eventbus's buffered socket reads and writes carry
a burst both ways through a real mosquitto with a TLS listener."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgecore.config import MqttSettings
from edgecore.eventbus.module import EventBus
from hive.bus import Bus
from hive.local_messages import MessageIds
from tests.support.procs import free_port, port_open, wait_until
from wire import topics
from wire.codec import bus_message


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = issuer if issuer else (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, False)
    return builder.sign(signer, hashes.SHA256())


def _write_pki(d: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 in ``d``; returns the CA file."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("127.0.0.1", key, (ca.subject, ca_key))
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return d / "ca.crt"


@contextlib.asynccontextmanager
async def tls_mosquitto(d: Path) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    """mosquitto with only a TLS listener; yields its port and a client context trusting it."""
    ca = _write_pki(d)
    port = free_port()
    conf = d / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        f"cafile {ca}",
        f"certfile {d / 'server.crt'}",
        f"keyfile {d / 'server.key'}",
    ]
    if os.geteuid() == 0:  # mosquitto would drop to a user who cannot read tmp_path
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    proc = await asyncio.create_subprocess_exec(
        "mosquitto", "-c", str(conf), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_until(lambda: port_open(port), timeout=5)
        yield port, ssl.create_default_context(cafile=str(ca))
    finally:
        proc.kill()
        await proc.wait()


async def test_tls_burst_both_ways(tmp_path: Path) -> None:
    """Over mqtts, 300 reports reach the twin and 300 2 KiB answers reach the mapper, in order."""
    bus = Bus(inbox_size=1024)
    bus.register("eventbus", "bus")
    bus.register("twin", "twin")
    ids = MessageIds()
    n = 300
    async with tls_mosquitto(tmp_path) as (port, ctx):
        eb = EventBus(
            bus=bus,
            settings=MqttSettings(mode="external", url=f"mqtts://127.0.0.1:{port}"),
            node_name="n1",
            data_dir=tmp_path / "edge",
            tls_context=ctx,
        )
        task = asyncio.create_task(eb.run(), name="test:eventbus")
        try:
            await wait_until(lambda: eb.connected.is_set(), timeout=5)
            async with aiomqtt.Client(
                "127.0.0.1", port, identifier="mapper", tls_context=ctx
            ) as mapper:
                await mapper.subscribe("$hw/events/device/+/twin/update/result", qos=1)
                for i in range(n):
                    await mapper.publish(topics.twin_update("d1"), json.dumps({"n": i}), qos=1)
                async with asyncio.timeout(10):
                    got = [json.loads((await bus.receive("twin")).content)["n"] for _ in range(n)]
                assert got == list(range(n))
                pad = "x" * 2048
                answers = [
                    (topics.twin_update_result("d1"), {"n": i, "pad": pad}) for i in range(n)
                ]
                await bus.send(
                    "eventbus",
                    bus_message(
                        source="twin",
                        group="bus",
                        operation="publish_batch",
                        resource="",
                        content=answers,
                        msg_id=ids(),
                    ),
                )
                async with asyncio.timeout(10):
                    it = aiter(mapper.messages)
                    back = [json.loads((await anext(it)).payload)["n"] for _ in range(n)]
            assert back == list(range(n))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
