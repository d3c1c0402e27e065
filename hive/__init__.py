"""A small beehive: the module runtime both cloudhub and edgecore are built from.

- :mod:`hive.bus` — named modules with bounded inboxes; ``send``, ``send_to_group``,
  ``send_sync`` (reply matched on ``parent_msg_id``). Modules talk only through it.
- :mod:`hive.module` — the ``Module`` protocol and the runner that starts, restarts and stops
  modules as named, owned tasks.
- :mod:`hive.process` — logging setup and run-until-signalled, shared by the commands.
- :mod:`hive.files` — atomic, permission-safe file writes (keys, certificates).
- :mod:`hive.datadir` — one owner per data dir: the lock ``cloudhub serve`` and
  ``edgecore run`` take before anything else.
- :mod:`hive.flags` — the value rules of settings and flags (ports, durations) as pydantic
  types, and a parser whose usage errors are one line.
- :mod:`hive.local_messages` — cheap process-unique ids for the bus messages a module makes by
  the thousand (:func:`wire.codec.bus_message` builds the messages).
- :mod:`hive.backoff` — jittered, capped exponential backoff (pure).

No sockets, databases or HTTP here: only asyncio.
"""
