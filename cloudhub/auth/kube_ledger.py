"""The auth ledger in a Kubernetes Secret, shared by every cloudhub replica.

Why a Secret and not each replica's ``auth.db``: in Kubernetes mode an edge may join through
one replica, renew through a second and reconnect to a third, and replicas come and go with
their ``emptyDir``. A certificate issued by replica A must be revocable by ``edgectl delete
node`` sent to replica B, the refusal must reach replica C, and a token admitting one join
must admit one across all of them. So the ledger lives where all replicas read and write the
same bytes: the Secret ``edgebridge-auth`` in cloudhub's namespace (``edgebridge``), key
``ledger.json.gz`` (gzip of JSON, see :class:`LedgerFile`). A Secret rather than a ConfigMap
so RBAC can keep it apart from configuration; its content is not secret (token ids, serial
numbers, node names) but whoever may write it may un-revoke certificates.

**Every write is compare-and-swap.** A change is applied to the ledger as last read and written
back with a replace guarded by that read's ``metadata.resourceVersion``; when another replica
wrote first the API server answers 409, and the change is re-applied to a fresh read (up to
``attempts`` times, with a short jittered pause). A change is reported done only once the write
that contains it was accepted, so a token use is counted exactly once across replicas (two
replicas consuming the last use: one write wins, the other re-reads and finds it used up), and
a revocation that was reported done is in the Secret. A write that cannot be made raises
:class:`~wire.errors.StoreError`; it is never dropped silently.

**Writes are batched.** Concurrent changes within one replica (a burst of joins) wait behind
the write in flight and then go out together in one guarded write, so a burst costs a few
round trips instead of one per join, and a replica never conflicts with itself.

**Reads are fresh.** :meth:`KubeLedger.revoked` and :meth:`KubeLedger.live_nodes` read the
Secret each time; :class:`~cloudhub.auth.revocation.Revocations` calls ``revoked`` at start and
every ``auth_refresh_interval`` (30 s), which is how a replica learns of revocations it did not
make (the Node watch in certcontroller usually tells it sooner).

**Size.** The API server refuses a Secret over 1 MiB. Every write first forgets records that
expired more than ``prune_grace`` (10 min) ago, so the ledger holds the live fleet: about one
or two certificates per node (a renewed certificate's predecessor stays until it expires) and
the counted tokens not yet expired. A certificate costs about 40 bytes compressed (mostly its
random serial), so the default budget of 900 KiB holds about 20,000 certificates. A write that
adds records (a join, a renewal, a token use) and would take the ledger past ``max_bytes`` is
refused with StoreError: the join or renewal fails and says why, nothing is half-done, and
joins resume as certificates expire (a fleet that needs more than one Secret holds is beyond
this design). Revocations and pruning are
never refused for size (they add a few bytes per certificate); the ~124 KiB left below the
API server's limit is their headroom.

**If the Secret is deleted** while replicas run, each keeps its last copy and the next write
re-creates the Secret from it (revocations are not lost to a mistaken ``kubectl delete``). An
unreadable Secret (edited by hand, or from a newer version) is never overwritten: reads and
writes fail with StoreError until it is fixed or deleted.

Times are whole seconds: expiry times rounded up, others down, so rounding never makes a
record look expired early. Replicas' clocks must roughly agree (as for ownership leases); the
pruning grace covers minutes of skew.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import gzip
import logging
import math
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from cloudhub.auth.ledger import IssuedRecord
from cloudhub.k8s.api import SECRETS, KubeApi
from cloudhub.k8s.labels import MANAGED_BY_CLOUDHUB, MANAGED_BY_LABEL
from wire.errors import ConfigError, Conflict, NotFound, StoreError, TokenError

log = logging.getLogger(__name__)

#: the Secret holding the ledger, in cloudhub's namespace
DEFAULT_SECRET = "edgebridge-auth"
#: cloudhub's namespace (where the Deployment and the ownership leases live)
DEFAULT_NAMESPACE = "edgebridge"
#: the Secret's data key: gzip-compressed JSON of a :class:`LedgerFile`
DATA_KEY = "ledger.json.gz"
#: the API server's limit on a Secret's data
SECRET_LIMIT = 1024 * 1024
#: default budget for the compressed ledger; the rest of the limit is revocations' headroom
DEFAULT_MAX_BYTES = 900 * 1024
#: default guarded writes tried before a change gives up
DEFAULT_ATTEMPTS = 8
#: default seconds a record is kept past its expiry (clock skew between replicas)
DEFAULT_PRUNE_GRACE = 600.0
#: longest pause before re-reading after a conflict, seconds (times the attempt number)
_CONFLICT_PAUSE = 0.05

_Serial = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,40}$")]


class LedgerFile(BaseModel):
    """What the Secret holds (JSON, gzip-compressed, under :data:`DATA_KEY`).

    Compact on purpose (it must fit in a Secret): tuples rather than objects, serials as hex,
    times as whole unix seconds.
    """

    model_config = ConfigDict(extra="forbid")

    #: format version; a replica refuses to read (and so to overwrite) any other
    version: Literal[1] = 1
    #: token id -> (uses so far, uses admitted, token expiry)
    tokens: dict[str, tuple[int, int, int]] = Field(default_factory=dict)
    #: node -> [(serial hex, issued at, not after, revoked at or None)]
    certs: dict[str, list[tuple[_Serial, int, int, int | None]]] = Field(default_factory=dict)


def encode_ledger(ledger: LedgerFile) -> bytes:
    """The Secret's value: gzip of the JSON (``mtime=0``: same ledger, same bytes)."""
    return gzip.compress(ledger.model_dump_json().encode(), compresslevel=6, mtime=0)


def decode_ledger(data: bytes) -> LedgerFile:
    """The ledger from the Secret's (base64-decoded) value.

    Raises:
        StoreError: not gzip, not JSON, or not a version-1 ledger.
    """
    try:
        return LedgerFile.model_validate_json(gzip.decompress(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        raise StoreError(f"unreadable ledger: {where}: {first['msg']}") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise StoreError(f"unreadable ledger: not gzip ({exc})") from exc


def prune_ledger(ledger: LedgerFile, before: float) -> int:
    """Drop tokens and certificates that expired before ``before``; how many went."""
    gone = [jti for jti, (_, _, exp) in ledger.tokens.items() if exp < before]
    for jti in gone:
        del ledger.tokens[jti]
    removed = len(gone)
    for node in list(ledger.certs):
        kept = [c for c in ledger.certs[node] if c[2] >= before]
        removed += len(ledger.certs[node]) - len(kept)
        if kept:
            ledger.certs[node] = kept
        else:
            del ledger.certs[node]
    return removed


@dataclass
class _Change:
    """One operation waiting for a write: applied to each fresh read until one write holds it."""

    #: mutates the ledger (and returns the operation's result), or raises TokenError untouched
    apply: Callable[[LedgerFile], Any]
    #: whether it adds records (refused when the ledger is full)
    grows: bool
    future: asyncio.Future[Any] = field(repr=False)


@dataclass
class _Snapshot:
    """The Secret as last read or written: its object (None if absent) and decoded ledger."""

    obj: dict[str, Any] | None
    ledger: LedgerFile


class KubeLedger:
    """An :class:`~cloudhub.auth.ledger.AuthLedger` in one Secret, shared between replicas."""

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        name: str = DEFAULT_SECRET,
        max_bytes: int = DEFAULT_MAX_BYTES,
        attempts: int = DEFAULT_ATTEMPTS,
        prune_grace: float = DEFAULT_PRUNE_GRACE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Args:
        api: the cluster connection (shared; not closed by the ledger).
        namespace: where the Secret lives (default ``edgebridge``).
        name: the Secret's name (default ``edgebridge-auth``).
        max_bytes: compressed size past which joins and renewals are refused (default
            900 KiB; at most the API server's 1 MiB).
        attempts: guarded writes tried per change before it fails with StoreError (8).
        prune_grace: seconds a record is kept past its expiry (600), for clock skew.
        clock: unix seconds, for pruning (tests pass a fixed one).

        Raises:
            ConfigError: ``max_bytes`` outside 1..1 MiB.
        """
        if not 0 < max_bytes <= SECRET_LIMIT:
            raise ConfigError(f"max_bytes must be in 1..{SECRET_LIMIT}, not {max_bytes}")
        self._api = api
        self._namespace = namespace
        self._name = name
        self._max_bytes = max_bytes
        self._attempts = max(1, attempts)
        self._prune_grace = prune_grace
        self._clock = clock
        #: the newest copy seen: a write starts from it and a 409 says when it is stale
        self._seen: _Snapshot | None = None
        #: changes waiting for the next write
        self._pending: list[_Change] = []
        #: the task writing for this replica, while there is something to write
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        #: guarded writes that lost to another writer (for tests and metrics)
        self.conflicts = 0

    @property
    def where(self) -> str:
        return f"Secret {self._namespace}/{self._name}"

    # -- AuthLedger ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the Secret once (absent is fine: it is created by the first write).

        Raises:
            ConfigError: the API refused, or the Secret is unreadable.
        """
        try:
            snap = await self._read()
        except StoreError as exc:
            raise ConfigError(f"cannot open the auth ledger: {exc}") from exc
        certs = sum(len(c) for c in snap.ledger.certs.values())
        log.info(
            "auth ledger in %s: %d certificate(s) of %d node(s), %d counted token(s)",
            self.where,
            certs,
            len(snap.ledger.certs),
            len(snap.ledger.tokens),
        )

    async def close(self) -> None:
        """Stop writing; changes not yet written fail with StoreError. Safe to call twice."""
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def use_token(self, jti: str, *, max_uses: int, expires_at: float) -> int:
        def apply(ledger: LedgerFile) -> int:
            uses, limit, exp = ledger.tokens.get(jti, (0, max_uses, math.ceil(expires_at)))
            if uses >= limit:
                raise TokenError(f"token used up ({limit} of {limit} uses)")
            ledger.tokens[jti] = (uses + 1, limit, exp)
            return uses + 1

        count: int = await self._change(apply, grows=True)
        return count

    async def record_cert(self, record: IssuedRecord) -> None:
        serial = format(record.serial, "x")
        entry = (
            serial,
            math.floor(record.issued_at),
            math.ceil(record.not_after),
            None if record.revoked_at is None else math.floor(record.revoked_at),
        )

        def apply(ledger: LedgerFile) -> None:
            held = ledger.certs.setdefault(record.node, [])
            held[:] = [c for c in held if c[0] != serial]
            held.append(entry)

        await self._change(apply, grows=True)

    async def revoke_node(self, node: str, *, at: float) -> frozenset[int]:
        stamp = math.floor(at)

        def apply(ledger: LedgerFile) -> frozenset[int]:
            held = ledger.certs.get(node, [])
            newly = frozenset(int(c[0], 16) for c in held if c[3] is None)
            if newly:
                ledger.certs[node] = [
                    (c[0], c[1], c[2], stamp if c[3] is None else c[3]) for c in held
                ]
            return newly

        serials: frozenset[int] = await self._change(apply, grows=False)
        return serials

    async def revoked(self, now: float) -> dict[int, str]:
        ledger = (await self._read()).ledger
        return {
            int(serial, 16): node
            for node, held in ledger.certs.items()
            for serial, _, not_after, revoked_at in held
            if revoked_at is not None and not_after >= now
        }

    async def live_nodes(self, now: float) -> set[str]:
        ledger = (await self._read()).ledger
        return {
            node
            for node, held in ledger.certs.items()
            if any(revoked_at is None and not_after >= now for _, _, not_after, revoked_at in held)
        }

    async def prune(self, now: float) -> int:
        before = now - self._prune_grace

        def apply(ledger: LedgerFile) -> int:
            return prune_ledger(ledger, before)

        try:
            removed: int = await self._change(apply, grows=False)
        except StoreError as exc:
            log.warning("could not prune the auth ledger in %s: %s", self.where, exc)
            return 0
        return removed

    # -- reading -------------------------------------------------------------------------------

    async def _read(self) -> _Snapshot:
        """The Secret now; the last copy seen if it was deleted meanwhile.

        Raises:
            StoreError: the API failed, or the Secret is unreadable.
        """
        if self._closed:
            raise StoreError(f"the auth ledger in {self.where} is closed")
        try:
            obj = await self._api.get(SECRETS, self._namespace, self._name)
        except NotFound:
            if self._seen is not None and self._seen.obj is not None:
                log.warning(
                    "%s was deleted; keeping this replica's copy, written back at the next change",
                    self.where,
                )
            kept = self._seen.ledger if self._seen is not None else LedgerFile()
            self._seen = _Snapshot(None, kept)
            return self._seen
        snap = _Snapshot(obj, await asyncio.to_thread(self._decode, obj))
        self._seen = snap
        return snap

    def _decode(self, obj: dict[str, Any]) -> LedgerFile:
        value = (obj.get("data") or {}).get(DATA_KEY)
        if value is None:
            return LedgerFile()  # created empty (e.g. by an operator): nothing recorded yet
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise StoreError(f"{self.where}: {DATA_KEY} is not base64") from exc
        try:
            return decode_ledger(raw)
        except StoreError as exc:
            raise StoreError(f"{self.where}: {exc}; fix or delete it") from exc

    # -- writing -------------------------------------------------------------------------------

    async def _change(self, apply: Callable[[LedgerFile], Any], *, grows: bool) -> Any:
        """Run ``apply`` in the next guarded write; its result once that write was accepted.

        Raises:
            TokenError: from ``apply`` (nothing was changed for it).
            StoreError: no write holding the change was accepted.
        """
        if self._closed:
            raise StoreError(f"the auth ledger in {self.where} is closed")
        change = _Change(apply, grows, asyncio.get_running_loop().create_future())
        self._pending.append(change)
        if self._writer is None or self._writer.done():
            # One writer task per replica, not the caller: a caller that gives up (a join
            # whose client hung up) must not abandon the other changes in its batch.
            self._writer = asyncio.create_task(self._drain(), name="auth-ledger-writer")
        return await change.future

    async def _drain(self) -> None:
        """Write queued changes, one batch per guarded write, until none are left."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._flush(batch)
            except asyncio.CancelledError:
                _fail(batch + self._pending, StoreError(f"{self.where}: write abandoned"))
                self._pending = []
                raise
            except StoreError as exc:
                _fail(batch, exc)
            except Exception as exc:
                log.exception("auth ledger write to %s failed", self.where)
                _fail(batch, StoreError(f"{self.where}: write failed: {exc}"))

    async def _flush(self, batch: list[_Change]) -> None:
        """Apply ``batch`` to the newest ledger and write it, retrying on conflicts.

        Raises:
            StoreError: the API failed, the Secret is unreadable, or ``attempts`` writes lost.
        """
        snap, fresh = self._seen, False
        attempt = 0
        while batch:
            if snap is None:
                snap, fresh = await self._read(), True
            ledger = _copy(snap.ledger)
            outcomes = [_outcome(c, ledger) for c in batch]
            prune_ledger(ledger, self._clock() - self._prune_grace)
            if ledger == snap.ledger:
                # Nothing to write. Trusted only if read just now: a stale copy might lack
                # what another replica recorded (say, the certificate we were asked to revoke).
                if fresh:
                    _settle(outcomes)
                    return
                snap = None
                continue
            payload = await asyncio.to_thread(encode_ledger, ledger)
            growing = [c for c, ok, _ in outcomes if ok and c.grows]
            if len(payload) > self._max_bytes and growing:
                log.error(
                    "auth ledger in %s is full (%d bytes, budget %d): refusing %d new "
                    "record(s) until some expire",
                    self.where,
                    len(payload),
                    self._max_bytes,
                    len(growing),
                )
                _fail(
                    growing,
                    StoreError(
                        f"the auth ledger in {self.where} is full ({len(payload)} of "
                        f"{self._max_bytes} bytes): no new certificates or token uses until "
                        "old ones expire"
                    ),
                )
                batch = [c for c in batch if not c.future.done()]
                continue
            try:
                written = await self._write(snap, payload)
            except Conflict:
                self.conflicts += 1
                attempt += 1
                if attempt >= self._attempts:
                    raise StoreError(
                        f"{self.where}: gave up after {attempt} conflicting writes "
                        "(other replicas kept writing first)"
                    ) from None
                log.debug("%s changed under us (attempt %d); re-reading", self.where, attempt)
                await asyncio.sleep(random.uniform(0, _CONFLICT_PAUSE * attempt))
                snap = None
                continue
            self._seen = _Snapshot(written, ledger)
            _settle(outcomes)
            return

    async def _write(self, snap: _Snapshot, payload: bytes) -> dict[str, Any]:
        """Create the Secret, or replace it guarded by the version ``snap`` read.

        Raises:
            Conflict: someone else wrote (or created) it first, or deleted it.
            StoreError: the API refused otherwise.
        """
        value = base64.b64encode(payload).decode()
        if snap.obj is None:
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": self._name,
                    "namespace": self._namespace,
                    "labels": {
                        "app.kubernetes.io/name": "cloudhub",
                        "app.kubernetes.io/part-of": "edgebridge",
                        MANAGED_BY_LABEL: MANAGED_BY_CLOUDHUB,
                    },
                },
                "data": {DATA_KEY: value},
            }
            return await self._api.create(SECRETS, self._namespace, body)
        body = copy.deepcopy(snap.obj)
        body["data"] = {**(body.get("data") or {}), DATA_KEY: value}
        # A ledger an older cloudhub created lacks the label that keeps it off the secret watch.
        meta = body.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY_CLOUDHUB}
        body.pop("stringData", None)
        try:
            return await self._api.replace(SECRETS, self._namespace, self._name, body)
        except NotFound as exc:
            # Deleted since we read it: the next attempt reads "absent" and re-creates it
            # from the copy kept in _seen.
            raise Conflict(f"{self.where} was deleted") from exc


def _copy(ledger: LedgerFile) -> LedgerFile:
    """A copy changes can mutate: records are tuples (immutable), so two levels suffice."""
    return LedgerFile.model_construct(
        version=ledger.version,
        tokens=dict(ledger.tokens),
        certs={node: list(held) for node, held in ledger.certs.items()},
    )


def _outcome(change: _Change, ledger: LedgerFile) -> tuple[_Change, bool, Any]:
    """(change, applied?, result or the TokenError it raised)."""
    try:
        return change, True, change.apply(ledger)
    except TokenError as exc:
        return change, False, exc


def _settle(outcomes: list[tuple[_Change, bool, Any]]) -> None:
    """Tell each waiting caller its result (callers that gave up are skipped)."""
    for change, ok, value in outcomes:
        if change.future.done():
            continue
        if ok:
            change.future.set_result(value)
        else:
            change.future.set_exception(value)


def _fail(changes: list[_Change], exc: StoreError) -> None:
    for change in changes:
        if not change.future.done():
            change.future.set_exception(exc)
