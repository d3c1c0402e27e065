"""docs/reference.md cannot drift from the commands: generated from, and checked against, --help."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_reference", ROOT / "scripts" / "gen-reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parts() -> tuple[str, str]:
    """(the hand-written part, the generated part) of docs/reference.md."""
    gen = generator()
    text = REFERENCE.read_text()
    head, rest = text.split(gen.BEGIN, 1)
    return head, rest.split(gen.END, 1)[0]


def help_of(generated: str, command: str) -> str:
    """The --help text of one command path (``cloudhub serve``) in the generated part."""
    match = re.search(rf"### `{re.escape(command)}`\n\n```text\n(.*?)```", generated, re.S)
    assert match, f"no help for {command!r} in docs/reference.md"
    return match.group(1)


def test_the_generated_part_is_current() -> None:
    """The command reference equals what scripts/gen-reference.py makes of --help now."""
    gen = generator()
    current = REFERENCE.read_text()
    assert gen.render(current) == current, (
        "docs/reference.md is stale: run scripts/gen-reference.py"
    )


def test_every_flag_named_by_hand_exists() -> None:
    """A flag named in the hand-written part appears in some command's --help."""
    hand, generated = parts()
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", hand))
    assert flags, "the hand-written part names no flags"
    assert sorted(f for f in flags if f not in generated and f not in INSTALL_FLAGS) == []


#: flags of scripts/install-edge.sh (not a Python command; its --help is checked below)
INSTALL_FLAGS = {"--prefix", "--cloud", "--token", "--node-name", "--cloudhub", "--keep"}


def test_the_ports_table_gives_each_flags_default() -> None:
    """Each row `| PORT | `COMMAND --FLAG` | ...` has PORT as that flag's default in --help."""
    hand, generated = parts()
    rows = re.findall(r"^\| (\d+) \| `([a-z ]+) (--[a-z-]+)` \|", hand, re.M)
    assert len(rows) >= 4
    for port, command, flag in rows:
        text = help_of(generated, command)
        option = re.search(rf"^ +(?:-\w, )?{flag}\b.*?(?=^ {{2}}-|^$|\Z)", text, re.M | re.S)
        assert option, f"{command} has no option {flag}"
        described = " ".join(option.group(0).split())
        assert port in described, f"{command} {flag}: default is not {port}: {described!r}"


def test_install_script_flags_named_are_its_own() -> None:
    """The install flags the reference names are in scripts/install-edge.sh's usage."""
    usage = (ROOT / "scripts" / "install-edge.sh").read_text()
    for flag in INSTALL_FLAGS - {"--keep"}:
        assert flag in usage


def test_docs_do_not_point_outside_the_clone() -> None:
    """README and docs link the project's own reference, not ../shared/CONTRACT.md."""
    for path in [ROOT / "README.md", ROOT / "SECURITY.md", *(ROOT / "docs").glob("*.md")]:
        assert "shared/CONTRACT" not in path.read_text(), path
