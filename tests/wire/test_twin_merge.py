"""Twin merge rules: any order and any duplication of the same updates converge."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wire import twin as m

small = st.integers(min_value=0, max_value=3)
values = st.builds(
    m.TwinValue,
    value=st.one_of(st.none(), st.text(alphabet="ab", max_size=2)),
    cloud=small,
    edge=small,
    timestamp=small,
    deleted=st.booleans(),
)
maybe = st.one_of(st.none(), values)
twins = st.builds(m.Twin, expected=maybe, actual=maybe)


@given(st.lists(twins, max_size=8), st.data())
def test_any_permutation_with_duplicates_converges(
    updates: list[m.Twin], data: st.DataObject
) -> None:
    """Delivering the same updates in any order, some of them repeatedly, gives one state."""
    reference = m.merge_all(updates)
    shuffled = data.draw(st.permutations(updates))
    repeats = data.draw(st.lists(st.sampled_from(updates), max_size=5)) if updates else []
    mixed = data.draw(st.permutations(shuffled + repeats))
    assert m.merge_all(mixed) == reference


@given(maybe, maybe)
def test_merge_is_commutative(a: m.TwinValue | None, b: m.TwinValue | None) -> None:
    """merge(a, b) == merge(b, a), also for values differing only in value or tombstone."""
    assert m.merge(a, b) == m.merge(b, a)


@given(maybe, maybe, maybe)
def test_merge_is_associative(
    a: m.TwinValue | None, b: m.TwinValue | None, c: m.TwinValue | None
) -> None:
    """Grouping does not matter."""
    assert m.merge(m.merge(a, b), c) == m.merge(a, m.merge(b, c))


@given(twins, twins)
def test_merge_is_idempotent(a: m.Twin, b: m.Twin) -> None:
    """Merging a value already merged changes nothing."""
    assert m.merge_twin(a, a) == a
    ab = m.merge_twin(a, b)
    assert m.merge_twin(ab, b) == ab
    assert m.merge_twin(ab, a) == ab


@given(
    generation=st.integers(min_value=1, max_value=1000),
    edits=st.integers(min_value=1, max_value=20),
    edit_ts=st.integers(min_value=0, max_value=10**13),
    cloud_ts=st.integers(min_value=0, max_value=10**13),
)
def test_newer_generation_beats_local_edits(
    generation: int, edits: int, edit_ts: int, cloud_ts: int
) -> None:
    """Local desired edits on generation G lose to the cloud's G+1, whatever the timestamps."""
    current: m.TwinValue | None = m.cloud_desired("a", generation=generation, timestamp=0)
    for _ in range(edits):
        current = m.merge(
            current,
            m.local_desired("edge", current=current, generation=generation, timestamp=edit_ts),
        )
    assert current is not None and current.value == "edge"
    newer = m.cloud_desired("cloud", generation=generation + 1, timestamp=cloud_ts)
    assert m.merge(current, newer) == newer
    assert m.merge(newer, current) == newer


@given(generation=st.integers(min_value=1, max_value=1000), ts=st.integers(min_value=0))
def test_local_edit_beats_same_generation(generation: int, ts: int) -> None:
    """A local edit wins over the cloud's value of the generation it was made on."""
    cloud = m.cloud_desired("c", generation=generation, timestamp=ts + 1000)
    local = m.local_desired("l", current=cloud, generation=generation, timestamp=ts)
    assert m.merge(cloud, local) == local
    again = m.cloud_desired("c", generation=generation, timestamp=ts + 5000)
    assert m.merge(local, again) == local


@given(st.integers(min_value=0, max_value=10**13), st.integers(min_value=0, max_value=10**13))
def test_hlc_moves_forward(last: int, now: int) -> None:
    """The next report clock is past the last one and not behind the wall clock."""
    nxt = m.next_hlc(last, now)
    assert nxt > last and nxt >= now


def test_newer_report_wins() -> None:
    """A later report (higher clock) replaces an earlier one in either order."""
    a = m.reported("1", hlc=5, timestamp=5)
    b = m.reported("2", hlc=6, timestamp=6)
    assert m.merge(a, b) == m.merge(b, a) == b


def test_tombstone_wins_a_tie_and_loses_to_newer() -> None:
    """A removal beats the value of the same version and loses to a newer version."""
    v = m.cloud_desired("x", generation=2, timestamp=1)
    gone = m.cloud_removed(generation=2, timestamp=1)
    assert m.merge(v, gone) == gone
    assert m.merge(gone, m.cloud_desired("y", generation=3, timestamp=0)).value == "y"  # type: ignore[union-attr]


def test_same_as_ignores_timestamp() -> None:
    """Re-delivery of the same value and version is not news; a new version is."""
    a = m.cloud_desired("x", generation=2, timestamp=1)
    assert a.same_as(m.cloud_desired("x", generation=2, timestamp=99))
    assert not a.same_as(m.cloud_desired("x", generation=3, timestamp=1))
    assert not a.same_as(None)
