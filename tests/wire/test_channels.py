"""Kubernetes' channel protocol: statuses carry exit codes and errors as kubectl reads them;
bad client messages are one DecodeError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire import channels
from wire.errors import DecodeError


@given(st.integers(-(2**31), 2**31 - 1), st.lists(st.text(max_size=8), max_size=3))
def test_exit_codes_survive_the_status(code: int, command: list[str]) -> None:
    """Any exit code written into a Status reads back as itself, with no error."""
    channel, data = channels.parse_frame(channels.status_frame(channels.exit_status(code, command)))
    assert channel == channels.ERROR
    assert channels.read_status(data) == (code, "")


@given(st.text(min_size=1, max_size=40))
def test_a_failure_reads_as_its_message(message: str) -> None:
    """A failure that is not the command's exit is exit code 1 and its message."""
    data = json.dumps(channels.failure_status(message)).encode()
    assert channels.read_status(data) == (channels.FAILURE_EXIT, message)


@given(st.integers(0, 65535), st.integers(0, 65535))
def test_resize_round_trips(width: int, height: int) -> None:
    """A resize message gives back the size it carried."""
    channel, data = channels.parse_frame(channels.resize_frame(width, height))
    assert channel == channels.RESIZE
    assert channels.parse_resize(data) == (width, height)


@given(st.binary(max_size=40))
def test_garbage_is_a_decode_error(data: bytes) -> None:
    """Resize and status parsers accept or raise DecodeError, nothing else."""
    for parse in (channels.parse_resize, channels.read_status):
        try:
            parse(data)
        except DecodeError:
            pass


def test_an_empty_message_has_no_channel() -> None:
    """An empty binary message is refused."""
    with pytest.raises(DecodeError):
        channels.parse_frame(b"")
