"""CRI endpoint spelling, without gRPC (the app decides whether to load gRPC from it)."""

from __future__ import annotations


def normalize_endpoint(endpoint: str) -> str:
    """``unix:///path`` for a bare path; other gRPC targets as given."""
    if endpoint.startswith("/"):
        return f"unix://{endpoint}"
    return endpoint
