"""The ``certmanager`` edge module: renews the node certificate before it expires, over the
live cloud link; and the on-disk credential helpers shared with join and edgehub."""
