"""cloudhub: the cloud side. Holds the edges' websocket links, decides what each node may see,
delivers it reliably, and issues node certificates. See ``cloudhub.app`` for the wiring."""
