"""edgestream: answers the cloud's logs and exec streams through the container runtime."""
