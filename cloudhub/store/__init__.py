"""Where cloudhub's objects live: the embedded SQLite store or (later) a Kubernetes cluster,
both behind :class:`cloudhub.store.base.ObjectStore`."""
