"""The auth ledger in a Secret: replicas share token uses, certificates and revocations; every
write is resourceVersion-guarded and retried on conflict; the Secret stays bounded."""

from __future__ import annotations

import asyncio
import base64
import gzip
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cloudhub.auth.kube_ledger import (
    DATA_KEY,
    DEFAULT_NAMESPACE,
    DEFAULT_SECRET,
    KubeLedger,
    LedgerFile,
    decode_ledger,
    encode_ledger,
    prune_ledger,
)
from cloudhub.auth.ledger import IssuedRecord
from cloudhub.auth.revocation import Revocations
from cloudhub.k8s.api import SECRETS, KubeApi
from cloudhub.k8s.labels import MANAGED_BY_CLOUDHUB, MANAGED_BY_LABEL
from tests.support.kubeapi import KubeApiEmulator
from wire.errors import ConfigError, StoreError, TokenError

pytestmark = pytest.mark.timeout(20)

NS = DEFAULT_NAMESPACE
SECRET = DEFAULT_SECRET
PATH = f"/api/v1/namespaces/{NS}/secrets/{SECRET}"
NOW = time.time()


def cert(serial: int, node: str, not_after: float = NOW + 3600) -> IssuedRecord:
    return IssuedRecord(serial=serial, node=node, issued_at=NOW, not_after=not_after)


def stored(kubeapi: KubeApiEmulator) -> LedgerFile:
    """The ledger as the API server holds it."""
    obj = kubeapi.get("secrets", NS, SECRET)
    assert obj is not None
    return decode_ledger(base64.b64decode(obj["data"][DATA_KEY]))


@pytest.fixture
async def api_b(kubeconfig: Path) -> AsyncIterator[KubeApi]:
    """A second connection: replica B."""
    client = KubeApi.from_config(kubeconfig)
    yield client
    await client.close()


@pytest.fixture
async def replicas(api: KubeApi, api_b: KubeApi) -> AsyncIterator[tuple[KubeLedger, KubeLedger]]:
    a, b = KubeLedger(api, namespace=NS), KubeLedger(api_b, namespace=NS)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


async def test_ledger_keeps_tokens_certificates_and_revocations(
    replicas: tuple[KubeLedger, KubeLedger],
) -> None:
    """Uses count to the limit; revoking a node revokes all its serials, once; live nodes."""
    a, _ = replicas
    assert [await a.use_token("t", max_uses=2, expires_at=NOW + 60) for _ in range(2)] == [1, 2]
    with pytest.raises(TokenError, match=r"used up \(2 of 2 uses\)"):
        await a.use_token("t", max_uses=2, expires_at=NOW + 60)
    big = 2**158 + 7  # serials are up to 159 bits
    for rec in (cert(1, "n1"), cert(big, "n1"), cert(3, "n2")):
        await a.record_cert(rec)
    assert await a.revoke_node("n1", at=NOW) == frozenset({1, big})
    assert await a.revoke_node("n1", at=NOW) == frozenset()
    assert await a.revoked(NOW) == {1: "n1", big: "n1"}
    assert await a.live_nodes(NOW) == {"n2"}
    assert await a.revoked(NOW + 7200) == {}  # expired certificates need no revocation


async def test_token_uses_are_counted_once_across_replicas(
    replicas: tuple[KubeLedger, KubeLedger],
) -> None:
    """Concurrent joins through two replicas: exactly ``uses`` succeed, numbered 1..uses."""
    a, b = replicas
    calls = [(a if i % 2 else b).use_token("t", max_uses=3, expires_at=NOW + 60) for i in range(8)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    counts = sorted(r for r in results if isinstance(r, int))
    assert counts == [1, 2, 3]
    assert sum(isinstance(r, TokenError) for r in results) == 5
    assert a.conflicts + b.conflicts >= 1  # they did race, and the loser re-read


async def test_revocation_by_one_replica_reaches_the_other_on_refresh(
    replicas: tuple[KubeLedger, KubeLedger],
) -> None:
    """B's revocation set learns A's revocation at its next refresh, and tells its listeners."""
    a, b = replicas
    on_b = Revocations(b)
    heard: list[tuple[str, frozenset[int]]] = []
    on_b.subscribe(lambda node, serials: heard.append((node, serials)))
    await on_b.load()
    await a.record_cert(cert(11, "edge-1"))
    await Revocations(a).revoke_node("edge-1")
    assert not on_b.is_revoked(11)
    await on_b.refresh()
    assert on_b.is_revoked(11)
    assert heard == [("edge-1", frozenset({11}))]


async def test_a_replica_revokes_certificates_another_issued(
    replicas: tuple[KubeLedger, KubeLedger],
) -> None:
    """B's copy predates A's certificate; revoking through B still finds it (fresh re-read)."""
    a, b = replicas
    await b.revoked(NOW)  # B has read the ledger before A records
    await a.record_cert(cert(21, "edge-1"))
    assert await b.revoke_node("edge-1", at=NOW) == frozenset({21})
    assert await a.revoked(NOW) == {21: "edge-1"}


async def test_a_replica_started_later_loads_the_revocations(
    replicas: tuple[KubeLedger, KubeLedger], kubeconfig: Path
) -> None:
    """A new replica (no local state at all) refuses what was revoked before it started."""
    a, _ = replicas
    await a.record_cert(cert(31, "edge-1"))
    await a.revoke_node("edge-1", at=NOW)
    api_c = KubeApi.from_config(kubeconfig)
    try:
        c = KubeLedger(api_c, namespace=NS)
        await c.start()
        revocations = Revocations(c)
        await revocations.load()
        assert revocations.is_revoked(31)
        await a.use_token("u", max_uses=1, expires_at=NOW + 60)
        with pytest.raises(TokenError):  # token counts carry over too
            await c.use_token("u", max_uses=1, expires_at=NOW + 60)
    finally:
        await api_c.close()


async def test_conflicting_writes_are_retried_on_a_fresh_read(
    replicas: tuple[KubeLedger, KubeLedger], kubeapi: KubeApiEmulator
) -> None:
    """Two 409s on the guarded PUT: the change is re-applied and lands, counted once."""
    a, _ = replicas
    await a.record_cert(cert(1, "n1"))  # the Secret exists; later writes are PUTs
    kubeapi.inject_conflict(method="PUT", path=PATH, times=2)
    gets = kubeapi.count("get", PATH)
    assert await a.use_token("t", max_uses=5, expires_at=NOW + 60) == 1
    assert a.conflicts == 2
    assert kubeapi.count("get", PATH) == gets + 2  # each conflict re-read the Secret
    assert stored(kubeapi).tokens["t"][0] == 1


async def test_a_write_that_keeps_losing_fails_loudly_and_changes_nothing(
    api: KubeApi, kubeapi: KubeApiEmulator
) -> None:
    """After ``attempts`` conflicts the caller gets StoreError; the use is not counted."""
    ledger = KubeLedger(api, namespace=NS, attempts=3)
    await ledger.start()
    await ledger.record_cert(cert(1, "n1"))
    kubeapi.inject_conflict(method="PUT", path=PATH, times=3)
    with pytest.raises(StoreError, match="gave up after 3 conflicting writes"):
        await ledger.use_token("t", max_uses=1, expires_at=NOW + 60)
    assert "t" not in stored(kubeapi).tokens
    assert await ledger.use_token("t", max_uses=1, expires_at=NOW + 60) == 1


async def test_an_api_failure_is_a_store_error(
    replicas: tuple[KubeLedger, KubeLedger], kubeapi: KubeApiEmulator
) -> None:
    """A 500 on the write fails the change with StoreError (the join or revocation fails)."""
    a, _ = replicas
    await a.record_cert(cert(1, "n1"))
    kubeapi.inject(500, method="PUT", path=PATH)
    with pytest.raises(StoreError):
        await a.revoke_node("n1", at=NOW)
    assert await a.revoked(NOW) == {}
    assert await a.revoke_node("n1", at=NOW) == frozenset({1})


async def test_concurrent_changes_share_writes(
    replicas: tuple[KubeLedger, KubeLedger], kubeapi: KubeApiEmulator
) -> None:
    """Fifty joins at once through one replica take a few writes, not fifty."""
    a, _ = replicas
    await a.record_cert(cert(1, "n0"))
    kubeapi.reset_counts()
    await asyncio.gather(*(a.record_cert(cert(100 + i, f"n{i}")) for i in range(50)))
    assert kubeapi.count("update", PATH) <= 3
    assert await a.live_nodes(NOW) == {f"n{i}" for i in range(50)}


async def test_a_full_ledger_refuses_new_records_but_not_revocations(
    api: KubeApi, kubeapi: KubeApiEmulator
) -> None:
    """Past ``max_bytes`` joins fail with a clear StoreError; revoking still works."""
    ledger = KubeLedger(api, namespace=NS, max_bytes=600)
    await ledger.start()
    serials = random.Random(7)
    with pytest.raises(StoreError, match=r"auth ledger .* is full"):
        for _ in range(100):
            await ledger.record_cert(cert(serials.getrandbits(159), "edge-1"))
    recorded = len(stored(kubeapi).certs["edge-1"])
    assert 0 < recorded < 100
    assert len(await ledger.revoke_node("edge-1", at=NOW)) == recorded
    with pytest.raises(StoreError, match="full"):
        await ledger.record_cert(cert(serials.getrandbits(159), "edge-2"))
    assert set(stored(kubeapi).certs) == {"edge-1"}


async def test_expired_records_are_pruned_after_a_grace(
    api: KubeApi, kubeapi: KubeApiEmulator
) -> None:
    """Records expired longer than the grace go at the next write (or prune); others stay."""
    now = 1_000_000.0
    ledger = KubeLedger(api, namespace=NS, prune_grace=60, clock=lambda: now)
    await ledger.start()
    await ledger.use_token("old", max_uses=1, expires_at=now - 120)
    await ledger.record_cert(cert(1, "gone", not_after=now - 120))
    await ledger.record_cert(cert(2, "skew", not_after=now - 30))  # within the grace
    await ledger.record_cert(cert(3, "live", not_after=now + 30))
    ledger_now = stored(kubeapi)
    assert set(ledger_now.certs) == {"skew", "live"} and ledger_now.tokens == {}
    assert await ledger.prune(now + 60) == 1
    assert set(stored(kubeapi).certs) == {"live"}
    assert await ledger.live_nodes(now) == {"live"}


async def test_an_unreadable_secret_is_never_overwritten(
    api: KubeApi, kubeapi: KubeApiEmulator
) -> None:
    """Garbage in the Secret: start fails with ConfigError, writes with StoreError, untouched."""
    garbage = base64.b64encode(gzip.compress(b'{"version": 2}')).decode()
    kubeapi.seed(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": NS},
            "data": {DATA_KEY: garbage},
        }
    )
    ledger = KubeLedger(api, namespace=NS)
    with pytest.raises(ConfigError, match="unreadable ledger"):
        await ledger.start()
    with pytest.raises(StoreError, match="fix or delete it"):
        await ledger.record_cert(cert(1, "n1"))
    with pytest.raises(StoreError):
        await ledger.revoked(NOW)
    obj = kubeapi.get("secrets", NS, SECRET)
    assert obj is not None and obj["data"][DATA_KEY] == garbage


async def test_a_deleted_secret_is_restored_from_the_replicas_copy(
    replicas: tuple[KubeLedger, KubeLedger], api: KubeApi, kubeapi: KubeApiEmulator
) -> None:
    """A mistaken delete loses no revocation: the next write re-creates it with them."""
    a, _ = replicas
    await a.record_cert(cert(41, "edge-1"))
    await a.revoke_node("edge-1", at=NOW)
    await api.delete(SECRETS, NS, SECRET)
    assert await a.revoked(NOW) == {41: "edge-1"}  # kept meanwhile
    await a.record_cert(cert(42, "edge-2"))
    assert set(stored(kubeapi).certs) == {"edge-1", "edge-2"}
    assert (await a.revoked(NOW))[41] == "edge-1"


async def test_the_ledger_secret_is_labelled_as_cloudhubs_own(
    replicas: tuple[KubeLedger, KubeLedger], kubeapi: KubeApiEmulator
) -> None:
    """Created with the managed-by label (off cloudhub's secret watch); one an older cloudhub
    wrote without it gets it on its next write."""
    a, _ = replicas
    await a.record_cert(cert(51, "edge-1"))
    obj = kubeapi.get("secrets", NS, SECRET)
    assert obj is not None
    assert obj["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_CLOUDHUB
    del obj["metadata"]["labels"][MANAGED_BY_LABEL]
    kubeapi.seed(obj)
    await a.record_cert(cert(52, "edge-2"))
    obj = kubeapi.get("secrets", NS, SECRET)
    assert obj is not None
    assert obj["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_CLOUDHUB
    assert set(stored(kubeapi).certs) == {"edge-1", "edge-2"}


async def test_closed_ledger_refuses_changes(replicas: tuple[KubeLedger, KubeLedger]) -> None:
    """After close, changes fail with StoreError instead of hanging."""
    a, _ = replicas
    await a.close()
    with pytest.raises(StoreError, match="closed"):
        await a.record_cert(cert(1, "n1"))


records = st.tuples(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
    st.lists(
        st.tuples(
            st.integers(1, 2**159 - 1).map(lambda n: format(n, "x")),
            st.integers(0, 2**33),
            st.integers(0, 2**33),
            st.none() | st.integers(0, 2**33),
        ),
        min_size=1,
        max_size=4,
    ),
)


@given(
    tokens=st.dictionaries(
        st.text(max_size=40),
        st.tuples(st.integers(0, 99), st.integers(1, 99), st.integers(0, 2**33)),
    ),
    certs=st.lists(records, max_size=8).map(dict),
    before=st.integers(0, 2**33),
)
def test_encoding_round_trips_and_pruning_keeps_exactly_the_unexpired(
    tokens: dict[str, tuple[int, int, int]],
    certs: dict[str, list[tuple[str, int, int, int | None]]],
    before: int,
) -> None:
    """decode(encode(x)) == x; prune drops exactly the records that expired before ``before``."""
    ledger = LedgerFile(tokens=tokens, certs=certs)
    assert decode_ledger(encode_ledger(ledger)) == ledger
    total = len(tokens) + sum(len(held) for held in certs.values())
    removed = prune_ledger(ledger, before)
    kept = len(ledger.tokens) + sum(len(held) for held in ledger.certs.values())
    assert removed + kept == total
    assert all(exp >= before for _, _, exp in ledger.tokens.values())
    assert all(c[2] >= before for held in ledger.certs.values() for c in held)
    assert all(ledger.certs.values())  # no empty node entries left behind


@given(
    st.binary(max_size=200) | st.binary(max_size=200).map(gzip.compress),
    st.integers(0, 300),
    st.integers(1, 255),
)
def test_decoding_garbage_is_a_store_error(data: bytes, at: int, flip: int) -> None:
    """Any bytes, gzip or not, one byte corrupted: a ledger or StoreError, nothing else."""
    corrupted = bytearray(data)
    if corrupted:
        corrupted[at % len(corrupted)] ^= flip
    for candidate in (data, bytes(corrupted)):
        try:
            decode_ledger(candidate)
        except StoreError:
            pass


def test_a_ledger_with_a_bad_serial_is_unreadable() -> None:
    """Serials must be hex: a hand-edited ledger with a bad one is refused, not half-read."""
    with pytest.raises(StoreError, match="unreadable ledger"):
        decode_ledger(gzip.compress(b'{"version": 1, "certs": {"n": [["xyz", 0, 0, null]]}}'))


def test_rbac_lets_cloudhub_keep_the_ledger_secret_and_no_other() -> None:
    """deploy/rbac.yaml: get/update on edgebridge-auth only, create in edgebridge (unnamed)."""
    path = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"
    (role,) = [
        d
        for d in yaml.safe_load_all(path.read_text())
        if d and d["kind"] == "Role" and d["metadata"]["namespace"] == DEFAULT_NAMESPACE
    ]
    rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    named = [r for r in rules if r.get("resourceNames")]
    assert [(r["resourceNames"], set(r["verbs"])) for r in named] == [
        ([DEFAULT_SECRET], {"get", "update"})
    ]
    assert [set(r["verbs"]) for r in rules if not r.get("resourceNames")] == [{"create"}]
