"""The watch resume/re-list decisions (cloudhub.k8s.resume), fed events and errors, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudhub.k8s.resume import NOT_OLDER_THAN, ListFloor, ListRequest, Next, WatchResume

pytestmark = pytest.mark.timeout(60)

CHANGE_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")

#: one thing a watch can see: a line (type, resourceVersion, code), or how a stream stops
inputs = st.one_of(
    st.tuples(st.just("line"), st.sampled_from(CHANGE_TYPES), st.sampled_from(["", "7", "8", "9"])),
    # a change as KubeStore hands it over on its common path (WatchResume.saw)
    st.tuples(st.just("saw"), st.just(""), st.sampled_from(["", "7", "8", "9"])),
    st.tuples(st.just("error-event"), st.sampled_from([410, 500, 403]), st.just("")),
    st.tuples(st.sampled_from(["ended", "failed", "gone"]), st.just(""), st.just("")),
)


def test_a_new_watch_opens_from_its_starting_version() -> None:
    """start() watches from ``since``, at once."""
    assert WatchResume("42").start() == Next("watch", "42")


def test_an_ended_stream_resumes_from_the_newest_version_seen_without_listing() -> None:
    """Events then a bookmark, then the server ends the stream: reopen from the bookmark."""
    resume = WatchResume("1")
    assert resume.event("ADDED", "2") is None
    assert resume.event("BOOKMARK", "5") is None
    assert resume.ended() == Next("watch", "5", backoff=False)


def test_a_stream_that_ends_without_a_line_backs_off() -> None:
    """Nothing read before the end: the reopen waits (a refusing server is not hammered)."""
    resume = WatchResume("1")
    assert resume.ended() == Next("watch", "1", backoff=True)
    resume.event("MODIFIED", "3")
    assert resume.ended() == Next("watch", "3", backoff=False)


def test_a_failure_resumes_from_the_same_version_after_a_backoff() -> None:
    """Network errors and non-410 ERROR events resume, never re-list."""
    resume = WatchResume("1")
    resume.event("ADDED", "4")
    assert resume.failed() == Next("watch", "4", backoff=True)
    assert resume.event("ERROR", "", code=500) == Next("watch", "4", backoff=True)


@pytest.mark.parametrize("how", ["open", "event"])
def test_410_gone_relists_not_older_than_the_newest_version(how: str) -> None:
    """410 when opening or as an ERROR event: re-list, with the newest version as the floor."""
    resume = WatchResume("1")
    resume.event("BOOKMARK", "6")
    step = resume.gone() if how == "open" else resume.event("ERROR", "", code=410)
    assert step == Next("relist", "6")


def test_410_before_any_line_relists_with_a_consistent_read() -> None:
    """The starting version (a list's: maybe ahead of the watch cache) is never a floor."""
    assert WatchResume("99").gone() == Next("relist", "")


@given(st.text(max_size=5), st.lists(inputs, max_size=40))
def test_decisions_follow_the_rules_for_any_sequence(
    since: str, seen: list[tuple[str, object, object]]
) -> None:
    """Any sequence: resume from the newest version seen; re-list only on 410, not older than
    the newest version streamed; back off only after a failure or a stream that sent nothing."""
    resume = WatchResume(since)
    newest, streamed = since, ""
    delivered = False
    for what, a, b in seen:
        if what in ("line", "saw"):
            assert isinstance(a, str) and isinstance(b, str)
            if what == "saw":
                resume.saw(b)
            else:
                assert resume.event(a, b) is None
            newest = b or newest
            streamed = b or streamed
            delivered = True
            continue
        if what == "error-event":
            assert isinstance(a, int)
            step = resume.event("ERROR", "", code=a)
            expected = Next("relist", streamed) if a == 410 else Next("watch", newest, backoff=True)
        elif what == "ended":
            step = resume.ended()
            expected = Next("watch", newest, backoff=not delivered)
        elif what == "failed":
            step = resume.failed()
            expected = Next("watch", newest, backoff=True)
        else:
            step = resume.gone()
            expected = Next("relist", streamed)
        assert step == expected
        assert resume.resource_version == newest
        delivered = False


def test_the_first_list_is_a_consistent_read() -> None:
    """No watch has seen anything: no resourceVersion, no match (a quorum read)."""
    assert ListFloor().request() == ListRequest()


def test_a_list_after_a_watch_is_not_older_than_what_it_saw() -> None:
    """The floor is the newest version a watch stood at; empty versions do not move it."""
    floor = ListFloor()
    floor.saw("10")
    floor.saw("")
    assert floor.request() == ListRequest("10", NOT_OLDER_THAN)


def test_a_refused_floored_list_is_retried_as_a_consistent_read() -> None:
    """The server refused the floor (unknown version, old server): next time, no floor."""
    floor = ListFloor()
    floor.saw("10")
    floor.failed(floor.request())
    assert floor.request() == ListRequest()
    floor.saw("12")
    assert floor.request() == ListRequest("12", NOT_OLDER_THAN)


def test_a_stale_failure_does_not_drop_a_newer_floor() -> None:
    """A list asked with an older floor failed after a watch moved on: keep the new floor."""
    floor = ListFloor()
    floor.saw("10")
    asked = floor.request()
    floor.saw("11")
    floor.failed(asked)
    assert floor.request() == ListRequest("11", NOT_OLDER_THAN)
