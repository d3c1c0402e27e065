"""Helpers for the fuzz tests: an event loop in a thread, JSON/frame strategies, and the
store's contents to compare before and after.

Hypothesis drives synchronous tests; the servers under test run in the background loop and
each example talks to them through :meth:`LoopThread.run`, so one server serves hundreds of
examples and every example still gets a fresh, independent check.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import strategies as st

from cloudhub.store.base import ObjectStore

T = TypeVar("T")

#: every kind an example could change through the admin API or a node's link
KINDS = ("node", "pod", "configmap", "secret", "device", "devicemodel")


async def store_contents(store: ObjectStore) -> list[list[str]]:
    """Each kind's objects as sorted canonical JSON: equal before and after an example means
    the example changed nothing."""
    out: list[list[str]] = []
    for kind in KINDS:
        items, _ = await store.list(kind)
        out.append(sorted(json.dumps(i, sort_keys=True) for i in items))
    return out


class LoopThread:
    """An asyncio loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


#: any JSON value, small
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_json(draw: st.DrawFn, seed: dict[str, Any]) -> Any:
    """``seed`` with a few paths replaced, removed or retyped."""
    doc = json.loads(json.dumps(seed))
    for _ in range(draw(st.integers(1, 3))):
        node: Any = doc
        path: list[Any] = []
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
            path.append(key)
            node = node[key]
        if not path:
            return draw(json_values)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "stringify"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "stringify":
            parent[path[-1]] = json.dumps(parent[path[-1]])
        else:
            parent[path[-1]] = draw(json_values)
    return doc


@st.composite
def mutated_text(draw: st.DrawFn, seed: str) -> str:
    """``seed`` with bytes flipped, cut or inserted."""
    chars = list(seed)
    for _ in range(draw(st.integers(1, 4))):
        if not chars:
            break
        i = draw(st.integers(0, len(chars) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if action == "flip":
            chars[i] = chr((ord(chars[i]) ^ draw(st.integers(1, 127))) or 1)
        elif action == "cut":
            del chars[i]
        elif action == "insert":
            chars.insert(i, draw(st.sampled_from(list('{}[]",:\\ 0a\x00'))))
        else:
            chars = chars[:i]
    return "".join(chars)
