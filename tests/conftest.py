"""Root test configuration: Hypothesis profiles, so every area shares one setting, and the
root logger restored after each test (a command's ``main()`` run in-process configures it).

``deadline=None`` and no ``too_slow`` health check because a loaded CI box makes timing
flaky (a process descheduled for a second fails either, with any strategy) while the property
itself does not depend on speed; the suite's own ``timeout`` still bounds every test.
Pick a profile with ``HYPOTHESIS_PROFILE=ci`` (more examples) or ``=dev`` (fewer, faster).
Fixtures belong in the conftest.py of the area that needs them, not here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

_UNTIMED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("default", _UNTIMED)
settings.register_profile("dev", _UNTIMED, max_examples=25)
settings.register_profile("ci", _UNTIMED, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """Undo what a command's ``setup_logging`` did to the root logger during a test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
