"""metamanager: the edge's SQLite cache of what the cloud bound to this node.

- :mod:`edgecore.metamanager.store` — :class:`MetaStore`, the ``meta`` table, batched writes
  and watchers.
- :mod:`edgecore.metamanager.module` — :class:`MetaManager`, the hive module that applies cloud
  messages to the store in group commits and ACKs them only once they are on disk.
"""
