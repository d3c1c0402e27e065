"""metaserver: the edge local API (KubeEdge's MetaServer), read-only, served from the cache.

See :mod:`edgecore.metaserver.server`: :func:`~edgecore.metaserver.server.make_app` builds the
request handler, :func:`~edgecore.metaserver.server.serve` starts it.
"""
