"""Resident memory each import of a piece of code adds: ``python bench/import_costs.py CODE``.

Prints one JSON object, module or package -> MiB, exclusive of what it imports in turn (a
package of ours, ``edgecore``/``wire``/``hive``, module by module; others as a whole), and
``"(start)"``: the interpreter's RSS before ``CODE`` ran. Stdlib only, so the figures start
from a bare interpreter. ``bench/edge_footprint.py`` runs it for ``edgecore run``'s imports;
run alone it answers "what does importing X cost?".
"""

from __future__ import annotations

import builtins
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

#: the code measured is this checkout's, whatever is installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: packages whose modules are counted one by one (others by top-level package)
OWN_PACKAGES = ("edgecore", "wire", "hive")


def import_costs(code: str) -> dict[str, float]:
    """Run ``code`` here and return the resident memory (MiB) each module or package it
    imports adds, exclusive of what that one imports in turn; ``"(start)"``: before it.

    Run it in a fresh process: what is imported stays loaded.
    """

    def rss() -> float:
        return (
            int(Path("/proc/self/statm").read_text().split()[1])
            * os.sysconf("SC_PAGE_SIZE")
            / 2**20
        )

    original: Any = builtins.__import__
    #: [name, rss when its import began, rss its nested imports added]
    stack: list[list[Any]] = []
    cost: dict[str, float] = {"(start)": rss()}

    def key(name: str, globals_: dict[str, Any] | None, level: int) -> str:
        if level:
            name = importlib.util.resolve_name(
                "." * level + name, (globals_ or {}).get("__package__") or ""
            )
        return name if name.split(".")[0] in OWN_PACKAGES else name.split(".")[0]

    def counting(
        name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (), level: int = 0
    ) -> Any:
        k = key(name, globals_, level)
        if k in sys.modules or k in cost:
            return original(name, globals_, locals_, fromlist, level)
        cost[k] = 0.0
        stack.append([k, rss(), 0.0])
        try:
            return original(name, globals_, locals_, fromlist, level)
        finally:
            this, start, nested = stack.pop()
            inclusive = rss() - start
            cost[this] = inclusive - nested
            if stack:
                stack[-1][2] += inclusive

    builtins.__import__ = counting  # type: ignore[assignment]
    try:
        exec(code, {})
    finally:
        builtins.__import__ = original
    return cost


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/import_costs.py 'import edgecore.cli'")
    print(json.dumps(import_costs(sys.argv[1])))
