"""scripts/install-edge.sh in a throwaway prefix: a working venv, and units systemd accepts."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("edgecore.service", "cloudhub.service", "edgebridge-mapper@.service")


def read_unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(path.read_text())
    return unit


@pytest.mark.parametrize("name", UNITS)
def test_deploy_units_run_from_the_venv_as_a_system_user(name: str) -> None:
    """Each unit in deploy/ runs a command of /opt/edgebridge/venv as its own user."""
    service = read_unit(ROOT / "deploy" / name)["Service"]
    assert service["ExecStart"].startswith("/opt/edgebridge/venv/bin/")
    assert service["User"] in ("edgecore", "cloudhub") and service["Restart"] == "always"
    assert service["ProtectHome"] == "true"  # why the venv is not under /root


def test_install_in_a_prefix_gives_a_venv_and_verified_units(tmp_path: Path) -> None:
    """--prefix: the venv's commands run, the units point there and pass systemd-analyze."""
    prefix = tmp_path / "root"
    done = subprocess.run(
        [str(ROOT / "scripts" / "install-edge.sh"), "--prefix", str(prefix), "--cloudhub"],
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    venv = prefix / "opt" / "edgebridge" / "venv" / "bin"
    for command in ("edgecore", "cloudhub", "edgectl"):
        ran = subprocess.run([str(venv / command), "--help"], capture_output=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
    data = prefix / "var" / "lib" / "edgecore"
    assert data.is_dir() and (data.stat().st_mode & 0o777) == 0o700
    units = prefix / "etc" / "systemd" / "system"
    edgecore = read_unit(units / "edgecore.service")["Service"]
    assert edgecore["ExecStart"].split() == [
        str(venv / "edgecore"), "run", "--data-dir", str(data)
    ]  # fmt: skip
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing (scripts/bootstrap.sh installs systemd)")
    verified = subprocess.run(
        [analyze, "verify", *(str(units / name) for name in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr


def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    """An unknown flag or a half-given join is refused with one line, nothing installed."""
    script = str(ROOT / "scripts" / "install-edge.sh")
    bad = subprocess.run(
        [script, "--prefix", str(tmp_path), "--cloud", "10.0.0.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip() == "install-edge: --cloud, --token and --node-name go together"
    assert not (tmp_path / "opt").exists()
