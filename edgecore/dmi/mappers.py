"""The mappers registered with this edge, and the file that keeps them across restarts.

A stock mapper registers once, when it starts; KubeEdge's edgecore forgets it when it restarts
itself. edgecore keeps each registered mapper (name, protocol, socket) in
``DATA_DIR/dmi-mappers.json`` and dials them again on start. A damaged file is one warning
and is replaced at the next registration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from hive.ratelimit import TokenBucket

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)

#: in the edge's data dir
DMI_MAPPERS_FILE = "dmi-mappers.json"


class MapperRecord(BaseModel):
    """A registered mapper as the file keeps it."""

    name: str
    protocol: str = Field(min_length=1)
    address: str
    version: str = ""


class MapperRecords(BaseModel):
    """The file: the mappers registered with this edge."""

    mappers: list[MapperRecord] = Field(default_factory=list)


def protocol_of(device: Mapping[str, Any]) -> str:
    """The protocol a Device's mapper speaks (``spec.protocol.protocolName``), or ``""``."""
    protocol = (device.get("spec") or {}).get("protocol") or {}
    return str(protocol.get("protocolName") or "") if isinstance(protocol, Mapping) else ""


@dataclass
class Mapper:
    """One registered mapper."""

    name: str
    protocol: str
    address: str
    bucket: TokenBucket
    version: str = ""
    #: the mapper's DeviceMapperService (generated stubs are untyped)
    stub: Any = None
    channel: grpc.aio.Channel | None = None
    #: model keys (``ns/name``) this mapper has been given
    models: set[str] = field(default_factory=set)

    def record(self) -> MapperRecord:
        return MapperRecord(
            name=self.name, protocol=self.protocol, address=self.address, version=self.version
        )


async def load_records(path: Path) -> list[MapperRecord]:
    """The mappers kept in ``path``; none when it is missing or damaged (warned)."""
    try:
        text = await asyncio.to_thread(path.read_text)
        return MapperRecords.model_validate_json(text).mappers
    except FileNotFoundError:
        return []
    except (OSError, ValidationError) as exc:
        log.warning("DMI: ignoring %s: %s", path, str(exc).splitlines()[0])
        return []


async def save_records(path: Path, records: list[MapperRecord]) -> None:
    """Replace ``path`` with ``records`` (atomically: a crash leaves the old file or the new)."""
    body = MapperRecords(mappers=records).model_dump_json(indent=1) + "\n"
    tmp = path.with_name(path.name + ".tmp")

    def write() -> None:
        tmp.write_text(body)
        tmp.replace(path)

    try:
        await asyncio.to_thread(write)
    except OSError as exc:
        log.warning("DMI: cannot keep the registered mappers in %s: %s", path, exc)
