"""Link workers: processes that terminate the edges' TLS and websocket framing for cloudhub.

One cloudhub process holds every decision (identity, delivery state, the store); with
``--link-workers N`` it also stops doing TLS and websocket framing itself, the largest single
cost per message once the rest is lean, and hands it to N worker processes, which use the
other cores.

- :mod:`cloudhub.linkworker.records` — the records on the socketpair (pure codec).
- :mod:`cloudhub.linkworker.channel` — either end of the socketpair (batched writes).
- :mod:`cloudhub.linkworker.worker` — the worker process (``python -m cloudhub.linkworker``).
- :mod:`cloudhub.linkworker.pool` — cloudhub's side: starts and restarts the workers, and
  gives the hub a :class:`~cloudhub.linkworker.pool.RelayedLink` per accepted edge.
"""
