"""Model-based test of the edge session: links come and go, frames and time pass at random.

The model keeps only what the policy promises: the n-th retry since the backoff last started
over waits within ``[d/2, d]`` with ``d = min(cap, initial * 2**n)``; the backoff starts over
after a link that stayed up two heartbeats or after a credential problem; every answer goes
back once to the module that asked on the same link; the link is given up exactly when the
cloud was silent for more than two heartbeats.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.wire.session_support import CAP, HEARTBEAT, INITIAL, cloud, make_session, upstream
from wire.session import STABLE_HEARTBEATS

SOURCES = st.sampled_from(["twin", "edged", "certmanager"])
STEPS = st.sampled_from([0.1, 0.4, 0.9, 1.0, 1.7, 2.5])
CLOUD_OPS = st.sampled_from(
    [("insert", "resource"), ("delete", "resource"), ("query", "resource"), ("open", "stream")]
)


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.session = make_session(seed=7)
        self.now = 0.0
        self.online = False
        self.up_since = 0.0
        self.heard = 0.0
        #: retries since the backoff last started over
        self.tries = 0
        #: upstream id -> source awaiting the cloud's answer on this link
        self.awaiting: dict[str, str] = {}
        self.answered: set[str] = set()

    # -- the link -----------------------------------------------------------------------------

    @rule(step=STEPS)
    def time_passes(self, step: float) -> None:
        self.now += step

    @precondition(lambda self: not self.online)
    @rule(reaches=st.booleans())
    def attempt(self, reaches: bool) -> None:
        self.session.connecting()
        if reaches:
            self.session.handshake_accepted()
            self.session.opened({})
            routes = self.session.stated(self.now).routes
            assert {r.message.operation for r in routes} == {"connected"}
            self.online, self.up_since, self.heard = True, self.now, self.now
            self.awaiting.clear()
        else:
            self.session.failed("connection refused")
            assert self.session.closed(self.now).routes == []
            self._check_retry()

    @precondition(lambda self: not self.online)
    @rule(status=st.sampled_from([401, 403]))
    def refused(self, status: int) -> None:
        self.session.connecting()
        self.session.refused(status, "no")
        self.session.closed(self.now)
        retry = self.session.next_retry()
        assert retry.on_new_credentials and retry.delay == CAP
        self.tries = 0

    @precondition(lambda self: self.online)
    @rule()
    def cut(self) -> None:
        self.session.failed("ConnectionClosedError")
        self._close()

    @precondition(lambda self: self.online)
    @rule()
    def poll(self) -> None:
        frames = self.session.poll(self.now)
        silent = self.now - self.heard > 2 * HEARTBEAT
        assert bool(self.session.close_reason) == silent
        if silent:
            assert frames == []
            self._close()
        else:
            assert len(frames) <= 1
            deadline = self.session.next_deadline()
            # (float sums: a deadline may equal now while the keepalive is not quite due)
            assert deadline is not None and deadline >= self.now - 1e-9

    def _close(self) -> None:
        routes = self.session.closed(self.now).routes
        assert {r.message.operation for r in routes} == {"disconnected"}
        if self.now - self.up_since >= STABLE_HEARTBEATS * HEARTBEAT:
            self.tries = 0
        self.online = False
        self.awaiting.clear()
        self._check_retry()

    def _check_retry(self) -> None:
        retry = self.session.next_retry()
        assert not retry.on_new_credentials
        d = min(CAP, INITIAL * 2**self.tries)
        assert d / 2 <= retry.delay <= d, (self.tries, retry.delay)
        self.tries += 1

    # -- traffic ------------------------------------------------------------------------------

    @rule(source=SOURCES)
    def module_sends(self, source: str) -> None:
        msg = upstream(source=source)
        frame = self.session.send(msg)
        assert (frame is not None) == self.online
        if self.online:
            self.awaiting[msg.id] = source

    @precondition(lambda self: self.online)
    @rule(data=st.data())
    def cloud_answers(self, data: st.DataObject) -> None:
        known = sorted(self.awaiting) + sorted(self.answered)
        parent = data.draw(st.sampled_from(known)) if known else "unknown"
        (route,) = self.session.receive(cloud("response", parent=parent), self.now).routes
        self.heard = self.now
        assert route.module == self.awaiting.pop(parent, "")
        self.answered.add(parent)

    @precondition(lambda self: self.online)
    @rule(op=CLOUD_OPS)
    def cloud_sends(self, op: tuple[str, str]) -> None:
        (route,) = self.session.receive(cloud(op[0], group=op[1]), self.now).routes
        self.heard = self.now
        assert route.module == ("edgestream" if op[1] == "stream" else "metamanager")

    @invariant()
    def agrees(self) -> None:
        assert self.session.connected == self.online
        assert self.session.awaiting_answers == len(self.awaiting)
        assert (self.session.next_deadline() is None) == (not self.online)


TestEdgeSession = SessionMachine.TestCase
_profile = settings.get_profile(settings.get_current_profile_name())
TestEdgeSession.settings = settings(_profile, max_examples=max(200, _profile.max_examples))
