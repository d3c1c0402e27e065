"""The mapper's side of the twin payloads.

A mapper sends what the edge parses (:mod:`wire.twin.inbound`: TwinUpdateIn, StateUpdateIn,
BaseIn for twin/get) and parses what the edge sends (TwinResult, TwinDelta, ErrorResult):
leniently, as the edge parses the mapper, so a newer edge's extra fields or a sloppier edge's
JSON numbers pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from wire.twin.inbound import LenientIn, Text


def actual_report(
    event_id: str, timestamp: int, values: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    """``.../twin/update`` with reported (``actual``) values only: ``{name: (value, type)}``.

    ``type`` is the twin's lower-case spelling (``float``); desired values stay the cloud's.
    """
    return {
        "event_id": event_id,
        "timestamp": timestamp,
        "twin": {
            name: {
                "actual": {"value": value, "metadata": {"timestamp": timestamp}},
                "metadata": {"type": type_},
            }
            for name, (value, type_) in values.items()
        },
    }


class MaybeValueIn(LenientIn):
    """A value as the edge sends it: a removed desired value has metadata but no ``value``."""

    value: Text | None = None


class MsgTwinIn(LenientIn):
    """One property of a result or delta, as a mapper reads it (versions unused)."""

    expected: MaybeValueIn | None = None
    actual: MaybeValueIn | None = None


class ResultIn(LenientIn):
    """``.../twin/get/result``, ``.../twin/update/result`` or ``.../twin/update/delta``.

    A refusal (:class:`ErrorResult`) has ``code`` and ``reason``; a delta has ``delta``.
    """

    event_id: Text = ""
    timestamp: int | None = None
    code: int | None = None
    reason: str | None = None
    twin: dict[str, MsgTwinIn | None] = Field(default_factory=dict)
    delta: dict[str, Text] = Field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """An error result: a ``code`` outside 2xx."""
        return self.code is not None and not 200 <= self.code < 300

    def expected(self) -> dict[str, str]:
        """Each property's desired value, where one is set (removed ones left out)."""
        out: dict[str, str] = {}
        for name, prop in self.twin.items():
            if prop is not None and prop.expected is not None and prop.expected.value is not None:
                out[name] = prop.expected.value
        return out
