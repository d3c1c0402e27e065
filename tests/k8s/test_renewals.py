"""The renewal schedule: one pass per period for many leases, none ever renewed late."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudhub.k8s.renewals import RenewalSchedule

pytestmark = pytest.mark.timeout(20)


def test_nothing_is_taken_before_the_earliest_is_due() -> None:
    """A pass before any key is due renews nothing."""
    s = RenewalSchedule(every=10)
    s.add("a", at=10)
    assert s.take_due(9.9) == [] and s.next_at() == 10


def test_keys_due_within_half_a_period_join_the_pass() -> None:
    """Due at 10: a key due at 14 is renewed early with it, one due at 16 is not."""
    s = RenewalSchedule(every=10)
    for key, at in (("a", 10), ("b", 14), ("c", 16)):
        s.add(key, at=at)
    assert s.take_due(10) == ["a", "b"]
    s.renewed("a", 10)
    s.renewed("b", 10)
    assert s.next_at() == 16 and s.take_due(16) == ["a", "b", "c"]


def test_a_discarded_key_is_not_rescheduled_by_a_late_result() -> None:
    """A renewal finishing after its key was dropped does not bring the key back."""
    s = RenewalSchedule(every=10)
    s.add("a", at=0)
    s.discard("a")
    s.renewed("a", 1)
    assert "a" not in s and s.next_at() is None


@given(st.lists(st.floats(min_value=0, max_value=1000), min_size=1, max_size=50))
def test_passes_converge_to_one_per_period(starts: list[float]) -> None:
    """Keys claimed at any times: each pass renews what is due (never later), and once every
    key has been renewed twice the whole set goes in one pass per period."""
    every = 10.0
    s = RenewalSchedule(every=every)
    for i, at in enumerate(starts):
        s.add(str(i), at=at + every)
    settled = max(starts) + 3 * every
    now = 0.0
    while now < settled + 5 * every:
        next_at = s.next_at()
        assert next_at is not None
        previous, now = now, next_at
        due = s.take_due(now)
        assert due  # the earliest key is due exactly when the pass runs
        for key in due:
            s.renewed(key, now)
        if previous > settled:
            assert len(due) == len(starts) and now - previous == pytest.approx(every)
