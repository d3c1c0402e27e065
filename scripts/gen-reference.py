#!/usr/bin/env python3
"""Regenerate the command reference in docs/reference.md from the commands' own ``--help``.

    scripts/gen-reference.py           # rewrite the generated part of docs/reference.md
    scripts/gen-reference.py --check   # exit 1 (saying what differs) if it is stale

The part between the ``BEGIN/END GENERATED`` markers is every command and subcommand's
``--help``, as argparse prints it at 100 columns; the rest of the file is written by hand and
``tests/docs`` checks it against the same output (every flag it names exists, every default
port it names is a default). Each command's parser is taken from its own ``main`` (which is
stopped at ``parse_args``), so a new subcommand or flag shows up without touching this script.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference.md"
BEGIN = "<!-- BEGIN GENERATED: scripts/gen-reference.py; do not edit by hand -->"
END = "<!-- END GENERATED -->"
#: (how a user types it, module holding ``main``)
COMMANDS = (
    ("cloudhub", "cloudhub.cli"),
    ("edgecore", "edgecore.cli"),
    ("edgectl", "edgectl.cli"),
    ("python -m devices", "devices.__main__"),
)
WIDTH = "100"


class _Caught(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__("parser caught")
        self.parser = parser


def parser_of(module: str) -> argparse.ArgumentParser:
    """The ArgumentParser the module's ``main`` builds (caught as it starts parsing)."""
    main: Callable[..., object] = importlib.import_module(module).main
    original = argparse.ArgumentParser.parse_args

    def catch(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Caught(self)

    argparse.ArgumentParser.parse_args = catch  # type: ignore[assignment,method-assign]
    try:
        main(["--help"])
    except _Caught as caught:
        return caught.parser
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    raise SystemExit(f"{module}.main did not call parse_args")


def walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, str]]:
    """``(command path, help text)`` for the parser and each subcommand, depth first."""
    yield path, parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias
                    continue
                seen.add(id(sub))
                yield from walk(sub, f"{path} {name}")


def generated() -> str:
    """The generated block, markers included."""
    os.environ["COLUMNS"] = WIDTH  # argparse wraps to the terminal's width
    out = [BEGIN, ""]
    for typed, module in COMMANDS:
        for path, text in walk(parser_of(module), typed):
            out += [f"### `{path}`", "", "```text", text.rstrip(), "```", ""]
    out.append(END)
    return "\n".join(out)


def render(current: str) -> str:
    """``current`` with its generated block replaced (appended if it has none)."""
    block = generated()
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + block + tail
    return current.rstrip() + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    try:
        importlib.import_module("cloudhub.cli")
    except ImportError as exc:
        venv = ROOT / ".venv" / "bin" / "python"
        if venv.exists() and Path(sys.executable) != venv:
            os.execv(venv, [str(venv), __file__, *sys.argv[1:]])  # the project's own venv
        print(f"gen-reference: {exc}: run scripts/bootstrap.sh first", file=sys.stderr)
        return 1
    current = REFERENCE.read_text()
    wanted = render(current)
    if args.check:
        if wanted == current:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(), wanted.splitlines(), "docs/reference.md", "generated", lineterm=""
        )
        print("\n".join(list(diff)[:60]))
        print("docs/reference.md is stale: run scripts/gen-reference.py", file=sys.stderr)
        return 1
    if wanted != current:
        REFERENCE.write_text(wanted)
        print("docs/reference.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
