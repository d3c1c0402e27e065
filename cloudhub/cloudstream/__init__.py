"""cloudstream: logs and exec relayed to pods over the nodes' links."""
