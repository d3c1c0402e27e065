"""metamanager: the hive module that applies cloud messages to the edge's SQLite cache
(:class:`edgecore.metastore.MetaStore`, shared with the modules that read it) in group commits,
and ACKs them only once they are on disk (:mod:`edgecore.metamanager.module`)."""
