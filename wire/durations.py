"""Durations as operators type them: ``30s``, ``15m``, ``24h``, ``1h30m``, ``2d``, or seconds.

One parser for every command (edgectl's ``--ttl``, cloudhub's ``--node-cert-validity``...), so
the same spelling means the same thing everywhere.
"""

from __future__ import annotations

import math
import re

from wire.errors import ConfigError

_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
#: Longest duration accepted, seconds (100 years): beyond it a typo is likelier than intent.
MAX_SECONDS = 100 * 365 * 86400.0


class InvalidDuration(ConfigError, ValueError):
    """A duration that does not parse, or is not more than zero (a ValueError for argparse)."""


def parse_duration(text: str, *, maximum: float = MAX_SECONDS) -> float:
    """``30s``, ``15m``, ``24h``, ``1h30m``, ``2d`` or plain seconds -> seconds (> 0).

    Raises:
        InvalidDuration: anything else, zero, or more than ``maximum`` seconds.
    """
    value = text.strip()
    seconds: float
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if not value or pos != len(value):
            raise InvalidDuration(
                f"invalid duration {text!r} (use e.g. 30s, 15m, 24h, 1h30m, 2d)"
            ) from None
    if math.isnan(seconds) or seconds <= 0:
        raise InvalidDuration(f"invalid duration {text!r}: must be more than zero")
    if seconds > maximum:
        raise InvalidDuration(f"invalid duration {text!r}: longer than {maximum:.0f} seconds")
    return seconds
