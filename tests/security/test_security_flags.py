"""The security flags parse strictly and fail with one line."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from cloudhub import cli as cloud_cli
from edgectl import cli as edgectl_cli


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90s", 90), ("1h30m", 5400), ("2.5", 2.5)],
)
def test_node_cert_validity_durations(text: str, seconds: float) -> None:
    """--node-cert-validity takes d/h/m/s units, combined, or plain seconds."""
    assert cloud_cli.duration_arg(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0", "-5", "1y", "h", "3d junk"])
def test_bad_validity_is_a_usage_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad duration exits 2 naming the value, before anything starts."""
    assert cloud_cli.main(["serve", "--node-cert-validity", text]) == 2
    err = capsys.readouterr().err
    assert "--node-cert-validity" in err and err.count("\n") == 1


def test_bad_node_rate_exits_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A negative --node-rate is refused before cloudhub starts."""
    assert cloud_cli.main(["serve", "--node-rate", "-1"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_token_uses_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    """edgectl token create --uses 0 fails with one line, without calling cloudhub."""
    code = edgectl_cli.main(
        ["--server", "https://127.0.0.1:1", "--token", "t", "token", "create", "--uses", "0"],
        out=io.StringIO(),
    )
    assert code == 1
    assert capsys.readouterr().err.strip() == "edgectl: --uses must be at least 1, not 0"
