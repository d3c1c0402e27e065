"""One owner per data dir: the lock helper shared by cloudhub and edgecore."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hive.datadir import LOCK_FILE, DataDirInUse, lock_data_dir
from wire.errors import ConfigError

pytestmark = pytest.mark.timeout(30)

_HOLD = """
import sys, time
from pathlib import Path
from hive.datadir import lock_data_dir
lock_data_dir(Path(sys.argv[1]), owner="test holder")
print("held", flush=True)
time.sleep(60)
"""


def _holder(data_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_lock_in_the_same_process_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """A second start inside one process is refused like one from another process."""
    first = lock_data_dir(tmp_path / "d", owner="cloudhub serve")
    with pytest.raises(DataDirInUse) as refused:
        lock_data_dir(tmp_path / "d", owner="cloudhub serve")
    assert f"cloudhub serve (pid {os.getpid()})" in str(refused.value)
    first.release()
    lock_data_dir(tmp_path / "d", owner="cloudhub serve").release()


def test_lock_of_another_process_is_refused_and_freed_by_kill_9(tmp_path: Path) -> None:
    """Another process's lock names its pid; the kernel frees it when that process is killed."""
    proc = _holder(tmp_path)
    try:
        with pytest.raises(DataDirInUse, match=rf"test holder \(pid {proc.pid}\)"):
            lock_data_dir(tmp_path, owner="edgecore run")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
    deadline = time.monotonic() + 5
    while True:  # the kernel releases the lock as the process is reaped
        try:
            lock = lock_data_dir(tmp_path, owner="edgecore run")
            break
        except DataDirInUse:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert (tmp_path / LOCK_FILE).read_text().startswith(f"{os.getpid()} edgecore run")
    lock.release()
    assert (tmp_path / LOCK_FILE).read_text() == ""


def test_unusable_data_dir_is_one_clear_error(tmp_path: Path) -> None:
    """A data dir that cannot be created (a file in the way) is a ConfigError naming it."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"cannot use data dir .*file/sub"):
        lock_data_dir(tmp_path / "file" / "sub", owner="cloudhub serve")


def test_release_twice_is_harmless(tmp_path: Path) -> None:
    """release() may be called again (stop after a failed start)."""
    lock = lock_data_dir(tmp_path, owner="x")
    lock.release()
    lock.release()
    assert not lock.held
