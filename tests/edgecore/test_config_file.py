"""edgecore.yaml is saved owner-only and atomically: a reader holding the old file keeps
reading the old settings, the new file is complete, and no temporary file is left."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edgecore import config
from edgecore.config import EdgeSettings

pytestmark = pytest.mark.timeout(10)


def test_save_replaces_the_file_whole_and_owner_only(tmp_path: Path) -> None:
    """A save renames a complete new file over the old one (mode 0600) and reads back."""
    path = tmp_path / config.CONFIG_FILE
    config.save(EdgeSettings(node_name="edge-1", data_dir=tmp_path), path)
    with path.open() as old:
        config.save(EdgeSettings(node_name="edge-2", data_dir=tmp_path), path)
        assert "edge-1" in old.read()  # the old file was replaced, not truncated in place
    assert config.load(path).node_name == "edge-2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [config.CONFIG_FILE]
