"""One owner per data dir: an exclusive lock held for the life of the process.

Two ``cloudhub serve`` on one ``--data-dir`` write the same ``store.db`` with their own idea of
the next resourceVersion (the first then fails every write), and two ``edgecore run`` on one
edge data dir kill each other's mosquitto and take the cloud link from each other. So each
takes ``DATA_DIR/.lock`` before it touches anything else there, and a second one stops at once
with one line naming the holder.

Why ``flock`` on a file we keep open: the kernel releases it when the process ends however it
ends (``kill -9``, OOM, power loss on reboot), so there is never a stale lock to clean up by
hand; and it is per open file, so a second start inside the same process (tests) is refused
like one in another process. The descriptor is close-on-exec, so child processes (mosquitto,
link workers) never hold it. The file holds the holder's pid and command, only to name it in
the refusal: the lock, not the file's content, decides.

The lock file is never deleted: removing it while another process waits to lock it would let
two processes hold locks on two different files of the same name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from wire.errors import ConfigError

LOCK_FILE = ".lock"
#: seconds a refused process waits for the holder's name to appear in the file (the holder
#: writes it right after it takes the lock)
_NAME_WAIT = 1.0


class DataDirInUse(ConfigError):
    """Another process holds the data dir."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        super().__init__(
            f"data dir {data_dir} is in use by {holder}: stop it first, or use another --data-dir"
        )
        self.data_dir = data_dir
        self.holder = holder


class DataDirLock:
    """The lock on one data dir; :meth:`release` (or process exit) gives it up."""

    def __init__(self, data_dir: Path, fd: int) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale name for whoever reads it next
        os.close(fd)  # closing the only descriptor of this open file releases the flock


def lock_data_dir(data_dir: Path, *, owner: str) -> DataDirLock:
    """Create ``data_dir`` (0700) if needed and lock it for this process.

    Args:
        data_dir: the directory to own.
        owner: what this process is, for the refusal another one prints
            (``"cloudhub serve"``, ``"edgecore run"``).

    Raises:
        DataDirInUse: another process (or another start in this one) holds it; the message
            names its pid and command.
        ConfigError: the directory or its lock file cannot be created or opened.
    """
    path = data_dir / LOCK_FILE
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot use data dir {data_dir}: {exc.strerror or exc}") from exc
    deadline = time.monotonic() + _NAME_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _holder(fd)
            if holder is not None or time.monotonic() >= deadline:
                os.close(fd)
                raise DataDirInUse(data_dir, holder or "another process") from None
            time.sleep(0.02)  # the holder took the lock a moment ago and is writing its name
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot lock {path}: {exc.strerror or exc}") from exc
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {owner}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return DataDirLock(data_dir, fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _holder(fd: int) -> str | None:
    """``"cloudhub serve (pid 1234)"`` from the lock file, or None while it names nobody alive."""
    try:
        text = os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        return None
    pid_text, _, command = text.partition(" ")
    if not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if not _alive(pid):
        return None  # a dead holder's name: the new one has not written its own yet
    return f"{command or 'a process'} (pid {pid})"
