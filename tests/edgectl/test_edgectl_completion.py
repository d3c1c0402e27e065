"""`edgectl completion bash|zsh`: scripts generated from the parser, that a shell runs."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from edgectl.cli import main

pytestmark = pytest.mark.timeout(30)


def _script(shell: str) -> str:
    out = io.StringIO()
    assert main(["completion", shell], out=out) == 0
    return out.getvalue()


def _complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the last of ``words`` (``edgectl`` first)."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
        '_shtab_edgectl; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, timeout=20, check=True
    )
    return sorted(done.stdout.split())


def test_bash_completes_commands_options_and_kinds(tmp_path: Path) -> None:
    """bash completes commands, a command's options and KIND from the parser."""
    script = tmp_path / "edgectl.bash"
    script.write_text(_script("bash"))
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=20)
    assert _complete(script, "edgectl", "de") == ["delete", "describe"]
    assert _complete(script, "edgectl", "get", "--wa") == ["--watch", "--watch-only"]
    assert _complete(script, "edgectl", "get", "dev") == ["devicemodels", "devices"]
    assert _complete(script, "edgectl", "describe", "n") == ["nodes"]
    assert "--log-level" not in _complete(script, "edgectl", "get", "--")


def test_zsh_script_names_commands_and_kinds() -> None:
    """The zsh script is a #compdef for edgectl listing the commands and the kinds."""
    script = _script("zsh")
    assert script.startswith("#compdef edgectl")
    for word in ("describe", "version", "completion", "--all-namespaces", "devicemodels"):
        assert word in script
    if shutil.which("zsh"):
        subprocess.run(["zsh", "-n"], input=script, text=True, check=True, timeout=20)
