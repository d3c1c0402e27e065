"""Root test configuration: only Hypothesis profiles, so every area shares one setting.

``deadline=None`` because a loaded CI box makes per-example timing flaky while the property
itself does not depend on speed; the suite's own ``timeout`` still bounds every test.
Pick a profile with ``HYPOTHESIS_PROFILE=ci`` (more examples) or ``=dev`` (fewer, faster).
Fixtures belong in the conftest.py of the area that needs them, not here.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", deadline=None)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.register_profile("ci", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
