"""edgehub: the edge's end of the cloud link (where cloud messages enter the edge)."""
