"""The edge session's reconnect decisions: backoff, its reset, credential problems, notices."""

from __future__ import annotations

import logging

import pytest

from tests.wire.session_support import (
    CAP,
    GROUPS,
    HEARTBEAT,
    INITIAL,
    link_up,
    make_session,
    retry_delays,
)
from wire.session import CONNECTED, DISCONNECTED, STABLE_HEARTBEATS, EdgeSession


def _grow(session: EdgeSession, n: int = 8) -> list[float]:
    return list(retry_delays(session, n))


def test_delays_grow_while_the_cloud_stays_away() -> None:
    """Failed attempts back off exponentially up to the cap, the first under a second."""
    delays = _grow(make_session(), 10)
    assert delays[0] <= INITIAL
    assert max(delays) <= CAP
    assert delays[-1] >= CAP / 2


def test_backoff_starts_over_after_a_link_that_stayed_up() -> None:
    """After an outage grew the delays, a link up for two heartbeats resets them: the next
    cut is retried within the first, sub-second delay."""
    session = make_session()
    assert max(_grow(session)) >= 2.0
    link_up(session, now=100.0)
    session.failed("ConnectionClosedError: no close frame received or sent")
    session.closed(100.0 + STABLE_HEARTBEATS * HEARTBEAT)
    assert session.next_retry().delay <= INITIAL


def test_backoff_keeps_growing_after_a_link_dropped_at_once() -> None:
    """A link the cloud drops within two heartbeats does not reset the delays, so a fleet
    does not hammer a replica that refuses the node right after the handshake."""
    session = make_session()
    grown = _grow(session, 6)
    link_up(session, now=100.0)
    session.closed(100.0 + STABLE_HEARTBEATS * HEARTBEAT - 0.001)
    assert session.next_retry().delay >= min(CAP, INITIAL * 2 ** len(grown)) / 2


def test_link_notices_go_to_every_notify_group_in_order() -> None:
    """``connected`` when the inventory is stated, ``disconnected`` when the link ends."""
    session = make_session()
    session.connecting()
    session.opened({"k": "1"})
    up = session.stated(0.0)
    assert [(r.group, r.message.operation) for r in up.routes] == [(g, CONNECTED) for g in GROUPS]
    down = session.closed(5.0)
    assert [(r.group, r.message.operation) for r in down.routes] == [
        (g, DISCONNECTED) for g in GROUPS
    ]
    assert {r.message.route.source for r in up.routes + down.routes} == {"edgehub"}


def test_an_attempt_without_a_link_tells_nobody() -> None:
    """Failing to connect sends no ``disconnected``: the modules never heard ``connected``."""
    session = make_session()
    session.connecting()
    session.failed("connection refused")
    assert session.closed(1.0).routes == []
    assert not session.connected


def test_unreachable_cloud_is_named_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    """An attempt that never got a link says where it could not get and why."""
    session = make_session()
    with caplog.at_level(logging.INFO):
        next(retry_delays(session, 1))
    assert "cannot reach the cloud at cloud.example:10000 (connection refused); retrying in" in (
        caplog.text
    )


def test_a_lost_link_says_reconnecting(caplog: pytest.LogCaptureFixture) -> None:
    """After a link that was up, the retry line is the plain INFO ``reconnecting in``."""
    session = make_session()
    link_up(session, 0.0)
    session.failed("ConnectionClosedError")
    with caplog.at_level(logging.INFO):
        session.closed(0.5)
        session.next_retry()
    assert "reconnecting in " in caplog.text
    assert "cannot reach" not in caplog.text


def test_refused_credentials_are_logged_once_and_wait_for_new_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 403 is an operator's problem: one ERROR line however often it repeats, a wait at the
    cap that ends early on new credentials, and the backoff starting over afterwards."""
    session = make_session()
    _grow(session, 6)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            session.connecting()
            session.refused(403, "node edge-1 is revoked")
            session.closed(0.0)
            retry = session.next_retry()
            assert retry.delay == CAP and retry.on_new_credentials
    refusal = "cloud refused the link (403): node edge-1 is revoked"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [refusal]
    assert session.last_error == refusal
    assert next(retry_delays(session, 1)) <= INITIAL


def test_an_expired_certificate_explains_the_refusal() -> None:
    """With the certificate expired, the remedy (not the HTTP status) is the problem stated."""
    session = make_session()
    session.connecting()
    session.refused(401, "unauthorized", expired="node certificate expired at X: run join")
    session.closed(0.0)
    assert session.next_retry().on_new_credentials
    assert session.last_error == "node certificate expired at X: run join"


def test_an_expired_certificate_explains_a_tls_failure() -> None:
    """A TLS alert with the certificate expired is the same credential problem."""
    session = make_session()
    session.connecting()
    session.failed("SSLError: alert", expired="node certificate expired at X: run join")
    session.closed(0.0)
    assert session.next_retry().on_new_credentials


def test_other_refusals_are_retried_with_backoff() -> None:
    """A 503 (a replica shedding load) is retried with the normal delays."""
    session = make_session()
    session.connecting()
    session.refused(503, "busy")
    session.closed(0.0)
    retry = session.next_retry()
    assert not retry.on_new_credentials and retry.delay <= INITIAL


def test_a_problem_is_logged_again_after_a_successful_handshake(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once the cloud accepted the node, the same refusal later is news: logged again."""
    session = make_session()
    with caplog.at_level(logging.ERROR):
        for accepted in (False, True, False):
            session.connecting()
            if accepted:
                session.handshake_accepted()
            session.unusable_credentials("cannot load the node certificate: gone")
            session.closed(0.0)
            session.next_retry()
    assert caplog.text.count("cannot load the node certificate: gone") == 2


def test_a_link_counts_as_stable_after_two_heartbeats() -> None:
    """stable() is what the reset is decided on: false offline and for young links."""
    session = make_session()
    assert not session.stable(100.0)
    link_up(session, now=10.0)
    assert not session.stable(10.0 + STABLE_HEARTBEATS * HEARTBEAT - 0.001)
    assert session.stable(10.0 + STABLE_HEARTBEATS * HEARTBEAT)
    session.closed(50.0)
    assert not session.stable(50.0)
