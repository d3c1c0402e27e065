"""KubeEdge's MQTT topics for device twins, state and membership: subscriptions, parsing, builders.

Pure: no I/O. The eventbus uses :func:`parse` to drop the edge's own output topics before they
reach the twin; the twin uses it to dispatch, and the builders to answer on the same device id
the mapper used.

A device id is ``{name}`` or ``{ns}/{name}``: KubeEdge's cloud switched to namespaced ids in
v1.16 and its eventbus subscribes to both forms, so mappers of either generation work. The
answer must go back under the form the mapper used, or the mapper (subscribed to its own
``.../result``) never sees it; :attr:`TopicMatch.device_id` keeps that form.

Parsing is by the fixed tail after the id (``twin/update``, ``twin/update/result``, ...). Every
tail starts with ``twin`` or ``state`` and no tail is another tail minus its first level, so a
topic never parses two ways even when a namespace or name is itself ``twin`` or ``state``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, Literal

from wire.errors import InvalidResource

#: QoS of every subscription, and of the edge's publishes that must not be lost (KubeEdge's
#: eventbus subscribes at QoS 1).
QOS: Final = 1
#: QoS of the edge's answers and documents, see :func:`publish_qos`.
QOS0: Final = 0

DEVICE_PREFIX: Final = "$hw/events/device/"
NODE_PREFIX: Final = "$hw/events/node/"

#: what edgecore subscribes to: twin and state topics for both id forms, and membership.
SUBSCRIPTIONS: Final[tuple[str, ...]] = (
    "$hw/events/device/+/twin/+",
    "$hw/events/device/+/+/twin/+",
    "$hw/events/device/+/state/update",
    "$hw/events/device/+/+/state/update",
    "$hw/events/node/+/membership/get",
)

Kind = Literal[
    # inputs: from mappers and applications, handled by the twin
    "twin_update",
    "twin_get",
    "state_update",
    "membership_get",
    # outputs: what the edge itself publishes; received back only through wide wildcards
    "twin_update_result",
    "twin_delta",
    "twin_document",
    "twin_get_result",
    "state_update_result",
    "membership_result",
    # under a subscribed prefix but not a topic of the protocol (``.../twin/bogus``)
    "unknown",
]

#: the edge's own publishes
OUTPUT_KINDS: Final[frozenset[Kind]] = frozenset(
    {
        "twin_update_result",
        "twin_delta",
        "twin_document",
        "twin_get_result",
        "state_update_result",
        "membership_result",
    }
)

#: what the edge publishes at QoS 0: answers to a request (they matter only to the client
#: waiting for them) and documents (a report of a change already made; see publish_qos)
QOS0_KINDS: Final[frozenset[Kind]] = frozenset(
    {
        "twin_update_result",
        "twin_get_result",
        "state_update_result",
        "membership_result",
        "twin_document",
    }
)

#: device topic tails (after the id) and what they are
_DEVICE_TAILS: Final[dict[tuple[str, ...], Kind]] = {
    ("twin", "update"): "twin_update",
    ("twin", "get"): "twin_get",
    ("state", "update"): "state_update",
    ("twin", "update", "result"): "twin_update_result",
    ("twin", "update", "delta"): "twin_delta",
    ("twin", "update", "document"): "twin_document",
    ("twin", "get", "result"): "twin_get_result",
    ("state", "update", "result"): "state_update_result",
}
_NODE_TAILS: Final[dict[tuple[str, ...], Kind]] = {
    ("membership", "get"): "membership_get",
    ("membership", "get", "result"): "membership_result",
}


@dataclass(frozen=True, slots=True)
class TopicMatch:
    """What a topic is about. Device fields are ``None`` for node topics and vice versa."""

    kind: Kind
    device_ns: str | None = None
    device_name: str | None = None
    node: str | None = None

    @property
    def is_output(self) -> bool:
        """One of the edge's own publishes (drop it: answering it would loop)."""
        return self.kind in OUTPUT_KINDS

    @property
    def device_id(self) -> str | None:
        """The id exactly as the topic spelled it: ``name`` or ``ns/name``."""
        if self.device_name is None:
            return None
        return device_id(self.device_ns, self.device_name)


_UNKNOWN: Final = TopicMatch("unknown")


def _valid_level(level: str) -> bool:
    # wildcards never appear in a published topic; an empty level is legal MQTT but no id
    return bool(level) and "+" not in level and "#" not in level


@functools.lru_cache(maxsize=4096)
def parse(topic: str) -> TopicMatch:
    """Classify ``topic``. Never raises: anything unrecognised is kind ``"unknown"``.

    Memoised: every report is parsed three times on its way (eventbus, twin, its answer's
    QoS), the same few topics per device over and over, and the result is immutable.
    """
    return _parse(topic)


def _parse(topic: str) -> TopicMatch:
    if topic.startswith(DEVICE_PREFIX):
        levels = topic[len(DEVICE_PREFIX) :].split("/")
        # the id is one or two levels; the shortest tail is two levels, the longest three
        for id_len in (1, 2):
            kind = _DEVICE_TAILS.get(tuple(levels[id_len:]))
            if kind is not None:
                ids = levels[:id_len]
                if not all(_valid_level(x) for x in ids):
                    return _UNKNOWN
                if id_len == 1:
                    return TopicMatch(kind, device_name=ids[0])
                return TopicMatch(kind, device_ns=ids[0], device_name=ids[1])
        return _UNKNOWN
    if topic.startswith(NODE_PREFIX):
        levels = topic[len(NODE_PREFIX) :].split("/")
        kind = _NODE_TAILS.get(tuple(levels[1:]))
        if kind is not None and _valid_level(levels[0]):
            return TopicMatch(kind, node=levels[0])
    return _UNKNOWN


def publish_qos(topic: str) -> int:
    """The QoS the edge publishes ``topic`` with.

    Answers and documents go at QoS 0. An answer is for a client that is connected and
    waiting, and losing one loses nothing: the request it answers was committed or refused
    either way, and ``twin/get`` reads the twin again. A document tells what a change did,
    after the fact; a client that was away reads the current twin rather than a queue of old
    documents (KubeEdge's own broker is QoS 0 throughout). At QoS 1 each would cost a PUBACK
    each way, a third of the broker's and the edge's packets under load. Deltas (desired
    values the device must act on) and membership changes are QoS 1, so a mapper that is away
    gets them from its persistent session.
    """
    return QOS0 if parse(topic).kind in QOS0_KINDS else QOS


def device_id(ns: str | None, name: str) -> str:
    """``ns/name``, or ``name`` when there is no namespace."""
    return f"{ns}/{name}" if ns else name


def _device(id_: str, tail: str) -> str:
    levels = id_.split("/")
    if len(levels) > 2 or not all(_valid_level(x) for x in levels):
        raise InvalidResource(f"device id {id_!r} is not 'name' or 'namespace/name'")
    return f"{DEVICE_PREFIX}{id_}/{tail}"


def twin_update(id_: str) -> str:
    """Where mappers report (and apps set desired values): ``.../{id}/twin/update``."""
    return _device(id_, "twin/update")


def twin_get(id_: str) -> str:
    """Where mappers ask for the whole twin: ``.../{id}/twin/get``."""
    return _device(id_, "twin/get")


def state_update(id_: str) -> str:
    """Where mappers report online/offline: ``.../{id}/state/update``."""
    return _device(id_, "state/update")


def twin_update_result(id_: str) -> str:
    """The answer to a ``twin/update`` (the twin after the change, or an error)."""
    return _device(id_, "twin/update/result")


def twin_delta(id_: str) -> str:
    """Desired values that differ from the reported ones."""
    return _device(id_, "twin/update/delta")


def twin_document(id_: str) -> str:
    """Last and current twin after a change."""
    return _device(id_, "twin/update/document")


def twin_get_result(id_: str) -> str:
    """The answer to a ``twin/get``."""
    return _device(id_, "twin/get/result")


def state_update_result(id_: str) -> str:
    """The answer to a ``state/update``."""
    return _device(id_, "state/update/result")


def membership_get(node: str) -> str:
    """Where mappers ask which devices are bound to ``node``."""
    return _node(node, "membership/get")


def membership_result(node: str) -> str:
    """The answer to a ``membership/get``."""
    return _node(node, "membership/get/result")


def _node(node: str, tail: str) -> str:
    if "/" in node or not _valid_level(node):
        raise InvalidResource(f"node name {node!r} is not a single topic level")
    return f"{NODE_PREFIX}{node}/{tail}"
