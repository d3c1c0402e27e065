"""edgestream's CRI log reader: complete lines only, tail, rotation to a new file."""

from __future__ import annotations

import os
from pathlib import Path

from edgecore.edgestream.logfile import LogFile, read_tail

T = "2026-01-01T00:00:00.000000001Z"


def line(text: str, stream: str = "stdout", tag: str = "F") -> bytes:
    return f"{T} {stream} {tag} {text}\n".encode()


def test_a_line_being_written_waits_for_its_newline(tmp_path: Path) -> None:
    """Only complete lines are handed out; the rest comes once its newline is written."""
    path = tmp_path / "0.log"
    path.write_bytes(line("one") + line("two")[:-3])
    log = LogFile(str(path))
    assert [e.message for e in log.read_lines()] == [b"one"]
    with path.open("ab") as f:
        f.write(b"wo\n")
    assert [e.message for e in log.read_lines()] == [b"two"]
    assert log.read_lines() == []


def test_tail_joins_partial_pieces_and_keeps_the_last_lines(tmp_path: Path) -> None:
    """--tail counts whole lines (P pieces joined) and leaves the file at its end."""
    path = tmp_path / "0.log"
    path.write_bytes(
        line("a") + line("b1", tag="P") + line("b2") + line("c", stream="stderr") + b"garbage\n"
    )
    text, log = read_tail(str(path), 2, timestamps=False)
    assert text == b"b1b2\nc\n"
    with path.open("ab") as f:
        f.write(line("d"))
    assert [e.message for e in log.read_lines()] == [b"d"]


def test_a_rotated_file_is_read_from_its_start(tmp_path: Path) -> None:
    """When the path names a new file (rotation), reading starts over in it."""
    path = tmp_path / "0.log"
    path.write_bytes(line("old"))
    log = LogFile(str(path))
    assert [e.message for e in log.read_lines()] == [b"old"]
    assert not log.replaced()
    os.rename(path, tmp_path / "0.log.1")
    path.write_bytes(line("new"))
    assert log.replaced()
    assert [e.message for e in log.read_lines()] == [b"new"]


def test_a_missing_file_has_no_lines_yet(tmp_path: Path) -> None:
    """A container that has not written its log file yet reads as empty."""
    log = LogFile(str(tmp_path / "none.log"))
    assert log.read_lines() == []
    assert not log.replaced()


def test_a_read_without_a_complete_line_is_not_the_end(tmp_path: Path) -> None:
    """Lines after more than one read's worth of unreadable bytes are still printed."""
    path = tmp_path / "0.log"
    junk = b"x" * 100 + b"\n"
    path.write_bytes(line("first") + junk * 1500 + line("last"))
    text, _ = read_tail(str(path), None, timestamps=False)
    assert text == b"first\nlast\n"
