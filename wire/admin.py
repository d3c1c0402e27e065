"""Shapes of the admin API that both cloudhub and edgectl read: one definition each.

- :class:`VersionInfo`: ``GET /admin/v1/version``.
- :class:`WatchLine`: one line of ``GET /admin/v1/{plural}?watch=true`` (JSON lines), as a
  Kubernetes watch has them: ``ADDED``/``MODIFIED``/``DELETED`` with the object,
  ``BOOKMARK`` (nothing changed; carries the resourceVersion reached, sent every few seconds
  so that a client can tell a quiet stream from a dead one), ``ERROR`` with a ``Status``
  (code 410: the watch fell behind the kept history; list again).
"""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any, Literal

from pydantic import BaseModel, Field

#: the distribution whose version edgectl and cloudhub report
DISTRIBUTION = "edgebridge"

#: Seconds between BOOKMARK lines on a quiet watch stream; a client waits about three times
#: this for a line before it calls the stream dead.
BOOKMARK_EVERY = 10.0

WatchType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]


def package_version() -> str:
    """The installed edgebridge version (``0.0.0+unknown`` when not installed)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def _platform() -> str:
    return f"{platform.system().lower()}/{platform.machine()}"


class VersionInfo(BaseModel):
    """What a component says about itself."""

    version: str = Field(default_factory=package_version)
    python: str = Field(default_factory=platform.python_version)
    platform: str = Field(
        default_factory=lambda: f"{platform.system().lower()}/{platform.machine()}"
    )
    #: where cloudhub keeps objects: ``embedded`` (SQLite) or ``kubernetes``; "" for a client
    store: str = ""


class WatchLine(BaseModel):
    """One event of a watch stream."""

    type: WatchType
    object: dict[str, Any]
