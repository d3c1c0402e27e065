"""The cloud-edge contract, shared by cloudhub and edgecore.

Everything in this package is pure and synchronous: no sockets, no event loop, no clock.
Time is passed in as ``now`` (seconds, any monotonic origin). That lets tests drive the
codec and the delivery state machines without a network.

- :mod:`wire.messages` — the KubeEdge envelope (header, route, content) as pydantic models.
- :mod:`wire.resources` — resource strings (``{ns}/{type}/{name}``, ``node/{node}/...``).
- :mod:`wire.codec` — bytes/text <-> :class:`~wire.messages.Message`, with a size limit.
- :mod:`wire.delivery` — cloud->edge delivery: latest-wins per key, ACK deadlines, retries.
- :mod:`wire.liveness` — keepalive and half-open link detection.
- :mod:`wire.session` — the edge's link session: routing by operation, the inventory
  handshake, keepalives, the reconnect backoff and when it starts over, credential problems.
- :mod:`wire.topics` — KubeEdge's MQTT device topics (``$hw/events/...``): parse and build.
- :mod:`wire.errors` — the one error tree.
"""
