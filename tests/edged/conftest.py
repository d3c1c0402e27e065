"""Fixtures of the edged tests: the shared real containerd (see tests/support/containerd.py)."""

from tests.support.containerd import cri_endpoint

__all__ = ["cri_endpoint"]
