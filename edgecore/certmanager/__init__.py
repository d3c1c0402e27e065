"""The ``certmanager`` edge module: renews the node certificate before it expires, over the
live cloud link. The credential files it renews are read and written by
:mod:`edgecore.credentials`, shared with join and edgehub."""
