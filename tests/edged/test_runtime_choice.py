"""Which runtime ``edgecore run`` uses: --runtime cri|none, auto by the socket's presence."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edgecore.app import runtime_kind
from edgecore.config import EdgeSettings, RuntimeSettings
from wire.errors import ConfigError

pytestmark = pytest.mark.timeout(10)


def settings(tmp_path: Path, **runtime: object) -> EdgeSettings:
    return EdgeSettings(
        node_name="n1", data_dir=tmp_path, runtime=RuntimeSettings.model_validate(runtime)
    )


def test_auto_is_cri_only_when_the_socket_exists(tmp_path: Path) -> None:
    """Without --runtime: cri when the endpoint's socket is there, else none."""
    sock = tmp_path / "c.sock"
    assert runtime_kind(settings(tmp_path, endpoint=f"unix://{sock}")) == "none"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
        assert runtime_kind(settings(tmp_path, endpoint=f"unix://{sock}")) == "cri"


def test_explicit_cri_without_a_socket_is_one_clear_error(tmp_path: Path) -> None:
    """--runtime cri with nothing at the endpoint names the path and the ways out."""
    with pytest.raises(ConfigError, match=r"no container runtime socket at .*nope\.sock"):
        runtime_kind(settings(tmp_path, kind="cri", endpoint=f"unix://{tmp_path}/nope.sock"))
    assert runtime_kind(settings(tmp_path, kind="none")) == "none"


def test_bad_runtime_settings_are_refused(tmp_path: Path) -> None:
    """Timings are validated (positive, bounded) before anything starts."""
    with pytest.raises(ValueError, match="sync_interval"):
        RuntimeSettings(sync_interval=0)
    with pytest.raises(ValueError, match="kind"):
        RuntimeSettings.model_validate({"kind": "docker"})
