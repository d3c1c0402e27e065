"""Reading a container's CRI log file: whole, its tail, and following it.

The line format and the tail are pure (:func:`wire.streams.parse_log_line`,
:class:`wire.streams.TailBuffer`); this is the file I/O around them. :class:`LogFile` hands out
complete lines only (a line still being written waits for its newline) and notices when its
file was replaced or truncated (rotation), starting again at the new file's beginning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from wire.errors import DecodeError
from wire.streams import LogLine, TailBuffer, parse_log_line

log = logging.getLogger(__name__)

#: bytes read from the file at once
READ_BLOCK = 64 * 1024
#: a line longer than this without a newline is cut (a runtime splits long lines anyway)
MAX_LINE = 1024 * 1024


class LogFile:
    """A CRI log file read forward from an offset, line by line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._inode: int | None = None
        self._offset = 0
        self._partial = b""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> bool:
        if self._fd is not None:
            return True
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        self._inode = os.fstat(self._fd).st_ino
        self._offset = 0
        self._partial = b""
        return True

    def replaced(self) -> bool:
        """Whether the path now names another file, or ours shrank below what we read
        (rotated or truncated); then the next :meth:`read_lines` starts over."""
        if self._fd is None:
            return False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # rotated away and not yet recreated: keep reading the old one
        if st.st_ino != self._inode or st.st_size < self._offset:
            self.close()
            return True
        return False

    def read_lines(self, limit: int = READ_BLOCK) -> list[LogLine]:
        """The complete lines written since the last call (about ``limit`` bytes at most)."""
        if not self._open():
            return []
        assert self._fd is not None
        out: list[LogLine] = []
        data = os.pread(self._fd, limit, self._offset)
        if not data:
            return out
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            try:
                out.append(parse_log_line(line))
            except DecodeError as exc:
                log.debug("%s: skipped a line: %s", self.path, exc)
        return out

    def lines(self) -> Iterator[list[LogLine]]:
        """Blocks of complete lines up to the end of the file as it is now.

        The end is where nothing more was read: a read that found no complete line (a block
        of lines not in the CRI format, or of one long line still without its newline) is
        not the end of the file.
        """
        while True:
            before = self._offset if self._fd is not None else -1
            block = self.read_lines()
            if block:
                yield block
            elif self._fd is None or self._offset == before:
                return


def previous_log(path: str) -> str | None:
    """The log file of the run before the one logging to ``path``, if it is still there.

    kubelet's layout, which edged keeps: ``.../{container}/{restartCount}.log``; the previous
    run's file is ``{restartCount - 1}.log`` beside it (a runtime removing a container leaves
    its log file, as a kubelet's does until it cleans the pod up).
    """
    directory, _, name = path.rpartition("/")
    stem = name.removesuffix(".log")
    if not stem.isdigit() or int(stem) == 0:
        return None
    candidate = f"{directory}/{int(stem) - 1}.log"
    return candidate if os.path.exists(candidate) else None


def read_tail(path: str, tail: int | None, *, timestamps: bool) -> tuple[bytes, LogFile]:
    """The last ``tail`` lines of the file as ``kubectl logs --tail`` prints them, and the
    file positioned after them (to follow from there)."""
    logfile = LogFile(path)
    buffer = TailBuffer(tail, timestamps=timestamps)
    for block in logfile.lines():
        for entry in block:
            buffer.add(entry)
    return buffer.output(), logfile
