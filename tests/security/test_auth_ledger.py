"""The auth ledger counts token uses and remembers revocations, across reopening; both
implementations behave alike."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudhub.auth.ledger import AuthLedger, IssuedRecord, MemoryLedger, SqliteLedger
from cloudhub.auth.revocation import Revocations
from wire.errors import TokenError

NOW = 1_000_000.0


@pytest.fixture(params=["sqlite", "memory"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuthLedger]:
    led: AuthLedger = (
        SqliteLedger(tmp_path / "auth.db") if request.param == "sqlite" else MemoryLedger()
    )
    await led.start()
    yield led
    await led.close()


def _cert(serial: int, node: str, not_after: float = NOW + 100) -> IssuedRecord:
    return IssuedRecord(serial=serial, node=node, issued_at=NOW, not_after=not_after)


async def test_token_uses_are_counted_to_the_limit(ledger: AuthLedger) -> None:
    """Uses 1..N succeed, the next one is 'used up'; other tokens are independent."""
    assert [await ledger.use_token("a", max_uses=2, expires_at=NOW) for _ in range(2)] == [1, 2]
    with pytest.raises(TokenError, match=r"used up \(2 of 2 uses\)"):
        await ledger.use_token("a", max_uses=2, expires_at=NOW)
    assert await ledger.use_token("b", max_uses=1, expires_at=NOW) == 1


async def test_revoking_a_node_revokes_all_its_certificates(ledger: AuthLedger) -> None:
    """Every unrevoked serial of the node, none of another node's; twice revokes nothing new."""
    big = 2**158 + 7  # serials are up to 159 bits
    for rec in (_cert(1, "a"), _cert(big, "a"), _cert(3, "b")):
        await ledger.record_cert(rec)
    assert await ledger.revoke_node("a", at=NOW) == frozenset({1, big})
    assert await ledger.revoke_node("a", at=NOW) == frozenset()
    assert await ledger.revoked(NOW) == {1: "a", big: "a"}
    assert await ledger.live_nodes(NOW) == {"b"}


async def test_expired_records_are_pruned(ledger: AuthLedger) -> None:
    """Expired tokens and certificates are forgotten; live ones stay."""
    await ledger.use_token("old", max_uses=1, expires_at=NOW - 1)
    await ledger.use_token("new", max_uses=1, expires_at=NOW + 1)
    await ledger.record_cert(_cert(1, "a", not_after=NOW - 1))
    await ledger.record_cert(_cert(2, "a", not_after=NOW + 1))
    assert await ledger.prune(NOW) == 2
    assert await ledger.live_nodes(NOW) == {"a"}
    with pytest.raises(TokenError):
        await ledger.use_token("new", max_uses=1, expires_at=NOW + 1)


async def test_sqlite_ledger_survives_reopening(tmp_path: Path) -> None:
    """Use counts and revocations are on disk, owner-only."""
    path = tmp_path / "auth.db"
    first = SqliteLedger(path)
    await first.start()
    await first.use_token("t", max_uses=1, expires_at=NOW)
    await first.record_cert(_cert(5, "a"))
    await first.revoke_node("a", at=NOW)
    await first.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = SqliteLedger(path)
    await second.start()
    try:
        with pytest.raises(TokenError):
            await second.use_token("t", max_uses=1, expires_at=NOW)
        revocations = Revocations(second, clock=lambda: NOW)
        await revocations.load()
        assert revocations.is_revoked(5) and not revocations.is_revoked(6)
    finally:
        await second.close()


async def test_listeners_hear_of_new_revocations_only(ledger: AuthLedger) -> None:
    """Revocations tell listeners which serials of which node were just revoked."""
    heard: list[tuple[str, frozenset[int]]] = []
    revocations = Revocations(ledger, clock=lambda: NOW)
    revocations.subscribe(lambda node, serials: heard.append((node, serials)))
    await ledger.record_cert(_cert(1, "a"))
    assert await revocations.revoke_node("a") == 1
    assert await revocations.revoke_node("a") == 0
    assert heard == [("a", frozenset({1}))]
