"""Random and mutated MQTT payloads to the twin handler: no crash, a result with a code and a
reason for every refusal, and a refused message changes neither the twin nor the outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.edgecore.test_twin_support import DEV, NODE, TwinEdge, outbox_rows, report, running_edge
from tests.security.fuzzing import LoopThread, json_values, mutated_json, mutated_text

pytestmark = pytest.mark.timeout(120)

TOPICS = [
    f"{DEV}/twin/update",
    f"{DEV}/state/update",
    f"{DEV}/twin/get",
    f"$hw/events/node/{NODE}/membership/get",
]
GOOD = report(temperature="21.5")


class TwinHarness:
    def __init__(self, tmp: Path) -> None:
        self.loop = LoopThread()
        self._cm = running_edge(tmp)
        self.edge: TwinEdge = self.loop.run(self._cm.__aenter__())
        self.before = self.state()

    def state(self) -> tuple[str, list[Any]]:
        twin = self.edge.module.twin("default/thermostat-1")
        return repr(sorted(twin.items())), outbox_rows(self.edge.path)

    def send(self, topic: str, payload: Any) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            await self.edge.mqtt(topic, payload)
            result = await self.edge.published(f"{topic}/result")
            self.edge.drain()
            return result

        return self.loop.run(go())

    def alive(self) -> bool:
        task = self.edge.task
        return task is not None and not task.done()

    def close(self) -> None:
        self.loop.run(self._cm.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinHarness]:
    h = TwinHarness(tmp_path_factory.mktemp("fuzz-twin"))
    yield h
    h.close()


def _check(twin: TwinHarness, topic: str, payload: Any) -> None:
    result = twin.send(topic, payload)
    assert twin.alive()
    if "code" not in result:
        twin.before = twin.state()  # accepted: the new state is the baseline
        return
    assert result["code"] in (400, 404, 409, 500)
    assert isinstance(result.get("reason"), str) and result["reason"]
    assert twin.state() == twin.before


_SETTINGS = settings(
    max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)


@_SETTINGS
@given(topic=st.sampled_from(TOPICS), payload=json_values)
def test_random_json_payloads(twin: TwinHarness, topic: str, payload: Any) -> None:
    """Any JSON value on any twin topic: an answer, and no change unless it was accepted."""
    _check(twin, topic, json.dumps(payload))


@_SETTINGS
@given(topic=st.sampled_from(TOPICS), payload=st.text(max_size=200))
def test_random_text_payloads(twin: TwinHarness, topic: str, payload: str) -> None:
    """Arbitrary text: refused with a reason, nothing changes."""
    _check(twin, topic, payload)


@_SETTINGS
@given(payload=mutated_json(GOOD))
def test_structure_mutated_reports(twin: TwinHarness, payload: Any) -> None:
    """A real report with fields removed, retyped or replaced by random JSON."""
    _check(twin, TOPICS[0], json.dumps(payload))


@_SETTINGS
@given(payload=mutated_text(json.dumps(GOOD)))
def test_byte_mutated_reports(twin: TwinHarness, payload: str) -> None:
    """A real report with bytes flipped, cut or inserted."""
    _check(twin, TOPICS[0], payload)
