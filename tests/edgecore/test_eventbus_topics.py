"""eventbus topics: KubeEdge's twin/state/membership topics parse and build, round trip."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire import topics
from wire.errors import InvalidResource
from wire.topics import TopicMatch

# a topic level as a mapper might write one: anything but "/", "+", "#" and empty
level = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/+#"),
    min_size=1,
    max_size=20,
)
# including the words the protocol itself uses, where ambiguity would hide
tricky = st.sampled_from(["twin", "update", "state", "get", "result", "delta", "document"])
ident = level | tricky
device_ids = st.one_of(ident, st.tuples(ident, ident).map("/".join))

DEVICE_BUILDERS: dict[str, Callable[[str], str]] = {
    "twin_update": topics.twin_update,
    "twin_get": topics.twin_get,
    "state_update": topics.state_update,
    "twin_update_result": topics.twin_update_result,
    "twin_delta": topics.twin_delta,
    "twin_document": topics.twin_document,
    "twin_get_result": topics.twin_get_result,
    "state_update_result": topics.state_update_result,
}
NODE_BUILDERS: dict[str, Callable[[str], str]] = {
    "membership_get": topics.membership_get,
    "membership_result": topics.membership_result,
}


@given(kind=st.sampled_from(sorted(DEVICE_BUILDERS)), id_=device_ids)
def test_device_topics_round_trip(kind: str, id_: str) -> None:
    """Every device topic built for an id parses back to its kind and that exact id."""
    match = topics.parse(DEVICE_BUILDERS[kind](id_))
    assert match.kind == kind
    assert match.device_id == id_
    ns, _, name = id_.rpartition("/")
    assert (match.device_ns, match.device_name, match.node) == (ns or None, name, None)
    assert match.is_output == (kind in topics.OUTPUT_KINDS)


@given(kind=st.sampled_from(sorted(NODE_BUILDERS)), node=ident)
def test_node_topics_round_trip(kind: str, node: str) -> None:
    """Membership topics built for a node parse back to their kind and node."""
    match = topics.parse(NODE_BUILDERS[kind](node))
    assert match == TopicMatch(kind, node=node)  # type: ignore[arg-type]


def test_kubeedge_examples() -> None:
    """Topics as KubeEdge mappers write them are recognised, with both id forms."""
    assert topics.parse("$hw/events/device/d1/twin/update") == TopicMatch(
        "twin_update", device_name="d1"
    )
    assert topics.parse("$hw/events/device/default/d1/twin/get") == TopicMatch(
        "twin_get", device_ns="default", device_name="d1"
    )
    assert topics.parse("$hw/events/device/d1/state/update").kind == "state_update"
    assert topics.parse("$hw/events/node/edge-1/membership/get") == TopicMatch(
        "membership_get", node="edge-1"
    )


@pytest.mark.parametrize(
    "topic",
    [
        "$hw/events/device/d1/twin/update/result",
        "$hw/events/device/ns/d1/twin/update/delta",
        "$hw/events/device/d1/twin/update/document",
        "$hw/events/device/d1/twin/get/result",
        "$hw/events/device/d1/state/update/result",
        "$hw/events/node/edge-1/membership/get/result",
    ],
)
def test_own_output_topics_are_outputs(topic: str) -> None:
    """What the edge publishes is recognised as output, so it is never handled as input."""
    assert topics.parse(topic).is_output


@pytest.mark.parametrize(
    "topic",
    [
        "$hw/events/device/d1/twin/bogus",
        "$hw/events/device/a/b/c/twin/update",
        "$hw/events/device//twin/update",
        "$hw/events/device/+/twin/update",
        "$hw/events/node/a/b/membership/get",
        "$hw/events/upload/x",
        "other/topic",
        "",
    ],
)
def test_unrecognised_topics_are_unknown(topic: str) -> None:
    """Anything outside the protocol is ``unknown`` (not an error, not an output)."""
    match = topics.parse(topic)
    assert match.kind == "unknown"
    assert not match.is_output
    assert match.device_id is None


@given(st.text(max_size=80))
def test_parse_never_raises(topic: str) -> None:
    """Arbitrary topics parse to some kind without raising."""
    assert topics.parse(topic).kind in topics.Kind.__args__  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["", "a/b/c", "a//b", "d+", "d#", "/d"])
def test_builders_refuse_bad_ids(bad: str) -> None:
    """An id that is not ``name`` or ``ns/name`` raises instead of building a wrong topic."""
    with pytest.raises(InvalidResource):
        topics.twin_update_result(bad)


def test_builders_refuse_bad_node() -> None:
    """A node name must be one topic level."""
    with pytest.raises(InvalidResource):
        topics.membership_result("a/b")


def test_subscriptions_cover_every_input_form() -> None:
    """The subscriptions are KubeEdge's: both id forms for twin and state, plus membership."""
    assert set(topics.SUBSCRIPTIONS) == {
        "$hw/events/device/+/twin/+",
        "$hw/events/device/+/+/twin/+",
        "$hw/events/device/+/state/update",
        "$hw/events/device/+/+/state/update",
        "$hw/events/node/+/membership/get",
    }
    assert topics.QOS == 1


def test_answers_are_qos0_and_what_the_edge_says_on_its_own_qos1() -> None:
    """Results and documents go at QoS 0; deltas and membership changes at QoS 1."""
    for answer in (
        topics.twin_document("ns/d1"),
        topics.twin_update_result("d1"),
        topics.twin_get_result("ns/d1"),
        topics.state_update_result("d1"),
        topics.membership_result("edge-1"),
    ):
        assert topics.publish_qos(answer) == 0, answer
    for own in (
        topics.twin_delta("d1"),
        "$hw/events/node/edge-1/membership/updated",
        "some/other/topic",
    ):
        assert topics.publish_qos(own) == 1, own
