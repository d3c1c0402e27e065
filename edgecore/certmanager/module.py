"""The ``certmanager`` module: renews the node certificate over the live link, before expiry.

When: at a point drawn uniformly between ``cert.renew_min_fraction`` and
``cert.renew_max_fraction`` (70-80 %) of the certificate's lifetime, once per certificate, so a
fleet joined together does not renew together. How: a fresh P-256 key and a CSR, sent upstream
through edgehub as an ``update`` of ``null/certificatesigningrequest/{node}`` (content: CSR PEM).
cloudhub's certcontroller answers with the new certificate (PEM), which is checked (pinned CA,
our key, our node name) and written together with its key in one step
(:func:`~edgecore.credentials.write_pair`).

Why this does not drop traffic: nothing about the live link changes. TLS authenticated it
once; the new certificate is used from the next connection on (edgehub reads the files for
every attempt). The old certificate stays valid until it expires, so a renewal that fails is
simply retried (jittered backoff, capped, and never slower than a tenth of what is left).

While offline nothing is attempted; the module waits for edgehub's ``connected``. If the
certificate expires meanwhile, the cloud will refuse the link: edgehub says so in one line and
the operator re-joins (``edgecore join --token ...``, which keeps the cache and the outbox).
This module notices the new ``node.crt`` within ``cert.check_interval`` and starts over.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from edgecore.config import EdgeSettings
from edgecore.credentials import CertInfo, expired_message, read_cert, rfc3339
from edgecore.modules import CERTMANAGER, CERTMANAGER_GROUP, EDGEHUB
from hive.backoff import backoff
from hive.bus import Bus
from wire.messages import Group, Message, Operation
from wire.session import CONNECTED, DISCONNECTED

log = logging.getLogger(__name__)

CSR_TYPE = "certificatesigningrequest"
#: edgehub's link notifications (see edgecore.edgehub.module)


class CertManager:
    """Renews the node certificate at 70-80 % of its life, over the cloud link."""

    name = CERTMANAGER
    group: str = CERTMANAGER_GROUP
    enabled = True

    def __init__(
        self,
        *,
        bus: Bus,
        settings: EdgeSettings,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._bus = bus
        self._settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._online = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        #: serial -> the renewal point drawn for it (unix seconds)
        self._due: dict[int, float] = {}
        #: successful renewals (for tests and metrics)
        self.renewals = 0
        self.last_error = ""

    def due(self, cert: CertInfo) -> float:
        """When ``cert`` is to be renewed (unix seconds); drawn once per certificate."""
        if cert.serial not in self._due:
            c = self._settings.cert
            low, high = sorted((c.renew_min_fraction, c.renew_max_fraction))
            fraction = self._rng.uniform(low, high)
            self._due = {
                cert.serial: cert.not_before + fraction * (cert.not_after - cert.not_before)
            }
        return self._due[cert.serial]

    async def run(self) -> None:
        inbox = asyncio.create_task(self._read_inbox(), name="certmanager:inbox")
        try:
            await self._renew_forever()
        finally:
            inbox.cancel()

    async def _read_inbox(self) -> None:
        while True:
            msg = await self._bus.receive(self.name)
            op = msg.operation
            if op == CONNECTED:
                self._online.set()
            elif op == DISCONNECTED:
                self._online.clear()
            elif op in (Operation.RESPONSE, Operation.ERROR):
                fut = self._waiting.pop(msg.parent_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            else:
                log.debug("certmanager ignored %s %s", op, msg.resource)

    async def _renew_forever(self) -> None:
        c = self._settings.cert
        delays = backoff(initial=c.retry_initial, cap=c.retry_cap, rng=self._rng)
        logged_expiry = 0
        while True:
            try:
                cert = read_cert(self._settings)
            except (OSError, ValueError) as exc:
                log.warning("cannot read the node certificate: %s", exc)
                await asyncio.sleep(c.check_interval)
                continue
            now = self._clock()
            if cert.expired(now):
                if logged_expiry != cert.serial:
                    logged_expiry = cert.serial
                    log.error("%s", expired_message(cert))
                await asyncio.sleep(c.check_interval)  # until `edgecore join` replaces it
                continue
            due = self.due(cert)
            if now < due:
                # In steps, so a re-joined certificate is noticed within check_interval.
                await asyncio.sleep(min(due - now, c.check_interval))
                continue
            if not self._online.is_set():
                try:  # asyncio.timeout: 3.11's wait_for can swallow a cancellation
                    async with asyncio.timeout(c.check_interval):
                        await self._online.wait()
                except TimeoutError:
                    continue
            if await self._renew(cert):
                delays = backoff(initial=c.retry_initial, cap=c.retry_cap, rng=self._rng)
                continue
            left = cert.not_after - self._clock()
            await asyncio.sleep(max(0.05, min(next(delays), left / 10)))

    async def _renew(self, current: CertInfo) -> bool:
        """One renewal attempt; True when the new certificate is on disk."""
        # cryptography (~9 MB resident) only from the first renewal on, see credentials
        from edgecore.certmanager import keys

        node = self._settings.node_name
        key, csr_der = await asyncio.to_thread(keys.make_key_and_csr, node)
        csr_pem = keys.csr_pem(csr_der)
        request = Message.new(
            source=CERTMANAGER,
            group=Group.RESOURCE,
            operation=Operation.UPDATE,
            resource=f"null/{CSR_TYPE}/{node}",
            content=csr_pem.decode(),
            timestamp_ms=int(self._clock() * 1000),
        )
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[request.id] = fut
        log.info(
            "renewing the node certificate (expires %s) over the cloud link",
            rfc3339(current.not_after),
        )
        try:
            await self._bus.send(EDGEHUB, request)
            reply = await asyncio.wait_for(fut, self._settings.cert.request_timeout)
        except TimeoutError:
            return self._failed("the cloud did not answer the renewal request in time")
        finally:
            self._waiting.pop(request.id, None)
        if reply.operation == Operation.ERROR:
            return self._failed(f"the cloud refused the renewal: {reply.content}")
        try:
            cert = keys.parse_issued(reply.content)
            ca = keys.load_pem(self._settings.ca_path.read_bytes())
            keys.check_issued(cert, ca, key, node)
        except (OSError, ValueError) as exc:
            return self._failed(f"unusable certificate from the cloud: {exc}")
        try:
            # In the event loop's thread on purpose: edgehub reads these files from it too,
            # so it never sees the swap half done (a few ms, once per renewal).
            keys.write_pair(self._settings, key, cert)
        except OSError as exc:
            return self._failed(f"cannot write the renewed certificate: {exc}")
        self.renewals += 1
        self.last_error = ""
        log.info(
            "node certificate renewed: valid until %s",
            rfc3339(cert.not_valid_after_utc.timestamp()),
        )
        return True

    def _failed(self, reason: str) -> bool:
        self.last_error = reason
        log.warning("certificate renewal failed: %s; will retry", reason)
        return False


__all__ = ["CertManager"]
