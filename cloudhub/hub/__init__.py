"""The websocket side of cloudhub: where edge messages enter and cloud messages leave.

In the order a frame meets them:

- :mod:`cloudhub.hub.server` — where a link enters: the wss listener (in this process or in
  link workers), admission at the upgrade.
- :mod:`cloudhub.hub.handshake` — who is connecting: identity from the client certificate.
- :mod:`cloudhub.hub.sessions` — who is connected: one live session per node, ownership
  among replicas, presence reports, revocation.
- :mod:`cloudhub.hub.upstream` — where an edge's frame is decided on: read, then routed by
  operation to the module that owns it.
- :mod:`cloudhub.hub.reader` — one node's reading: the ACK/keepalive fast path and pacing.
- :mod:`cloudhub.hub.inbox` — where cloud messages head for the edges: the hub's bus inbox
  (fan-outs, delivery starts, answers, streams) routed into the nodes' sessions.
- :mod:`cloudhub.hub.session` — one connected node: delivery state, keepalive, the writer task;
  where a frame leaves.
- :mod:`cloudhub.hub.links` — what a session reads and writes: a websocket of this process, or
  one a link worker terminates (:mod:`cloudhub.linkworker`).
- :mod:`cloudhub.hub.stock` — what a stock KubeEdge edgecore sends and expects.
- :mod:`cloudhub.hub.module` — the ``cloudhub`` module that assembles these.
"""
