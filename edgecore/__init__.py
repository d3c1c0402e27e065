"""edgecore: the edge side. Caches what the cloud binds to this node, serves it locally,
keeps working offline. See ``edgecore.app`` for how its modules are wired together."""
