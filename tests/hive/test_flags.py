"""Flag values are checked by the settings models' own pydantic constraints, in one line."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudhub.config import HubSettings
from hive.flags import Parser, Port, Seconds, checked, setting


@given(st.integers())
def test_port_flag_accepts_exactly_1_to_65535(value: int) -> None:
    """A port flag is an integer from 1 to 65535; anything else is refused with a reason."""
    parse = checked(Port)
    if 1 <= value <= 65535:
        assert parse(str(value)) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=r"must be at (least 1|most 65535)"):
            parse(str(value))


@pytest.mark.parametrize("text", ["0", "-5", "nan", "inf", "abc", ""])
def test_durations_must_be_positive_and_finite(text: str) -> None:
    """0, negative, non-finite or non-numeric durations are refused."""
    with pytest.raises(argparse.ArgumentTypeError):
        checked(Seconds)(text)


def test_setting_uses_the_models_field_constraints() -> None:
    """A flag typed by a settings field refuses what the model's Field refuses."""
    parse = setting(HubSettings, "max_pending_per_ip")
    assert parse("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="'0': must be at least 1"):
        parse("0")


def test_parser_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A usage error prints one line (no usage dump) and exits 2."""
    p = Parser(prog="tool")
    p.add_argument("--port", type=checked(Port))
    with pytest.raises(SystemExit) as done:
        p.parse_args(["--port", "99999"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == "tool: argument --port: '99999': must be at most 65535 (see --help)\n"
