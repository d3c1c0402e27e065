"""The websocket side of cloudhub: where edge messages enter and cloud messages leave.

- :mod:`cloudhub.hub.handshake` — who is connecting: identity from the client certificate.
- :mod:`cloudhub.hub.session` — one connected node: delivery state, keepalive, the writer task.
- :mod:`cloudhub.hub.reader` — one node's reading: the ACK/keepalive fast path and pacing.
- :mod:`cloudhub.hub.links` — what a session reads and writes: a websocket of this process, or
  one a link worker terminates (:mod:`cloudhub.linkworker`).
- :mod:`cloudhub.hub.module` — the ``cloudhub`` module: server, sessions, routing.
"""
