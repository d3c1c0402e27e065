"""``edgectl``: operate the fleet through cloudhub's admin API, the way kubectl users expect.

The command line is the contract (see CONTRACT.md): ``token create``, ``apply``, ``get``,
``describe``, ``delete``, ``twin set``, ``version``, ``completion``. Arguments go in any
order, as with kubectl: ``get devices -n default thermostat-1`` and ``get -n default devices
thermostat-1`` are the same, and the global options (``--server``, ``--token``,
``--data-dir``, ``--ca-file``) may come before or after the command.

- **One line on stderr for every failure**, prefixed ``edgectl:``, naming the problem; a named
  object that does not exist answers as kubectl does (``Error from server (NotFound): …``).
  Exit code 1 for bad input or a refusal, 2 for usage errors (argparse's convention).
- **Manifests are validated locally before anything is sent**, with the same checks the server
  runs (:mod:`wire.manifests`), so a typo is reported with its file and document number; the
  server validates again and applies all or nothing.
- **Credentials**: ``--token``, else ``EDGECTL_TOKEN``, else ``DATA_DIR/admin.token``; the CA
  for TLS: ``--ca-file``, else ``DATA_DIR/ca.crt``. ``DATA_DIR`` is ``--data-dir``, else
  ``./data/cloud`` when it exists (cloudhub's default), so on the cloud host plain ``edgectl``
  just works.
- **Registering a command** is one ``commands.add_parser(...)`` and a ``set_defaults(func=…)``
  whose function takes a :class:`~edgectl.commands.Context` and returns the exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from edgectl import commands as cmd
from edgectl import listing, streams
from edgectl.commands import DEFAULT_SERVER, DEFAULT_TTL, TOKEN_ENV, Context, ServerSaid, UsageError
from wire.errors import BridgeError, InvalidObject
from wire.kinds import PLURALS, aliases_help

_MAIN_EPILOG = """\
examples:
  edgectl token create --ttl 1h                 # a join token for 'edgecore join'
  edgectl apply -f pod.yaml                     # create or update objects
  edgectl get nodes                             # which edge nodes are online
  edgectl get pods -n default -o wide
  edgectl get nodes -w                          # watch nodes come and go
  edgectl describe node edge-1                  # its state, pods, devices and events
  edgectl twin set thermostat target=21.5       # set a device's desired value
  edgectl delete -f pod.yaml

credentials: --token, else $EDGECTL_TOKEN, else DIR/admin.token with --data-dir DIR
(default ./data/cloud when it exists). TLS is verified with --ca-file, else DIR/ca.crt.
Options may come before or after the command, and flags before or after names."""

_OUTPUT_HELP = (
    "output format: table (default), wide (more columns), name (kind/name), json, yaml, "
    "jsonpath=TEMPLATE (kubectl's, e.g. jsonpath={.items[*].metadata.name})"
)


class _Parser(argparse.ArgumentParser):
    """argparse with edgectl's one-line error style (still exit code 2 for usage errors), and
    options and positional arguments in any order in a command (kubectl's habit)."""

    _intermixing = False

    def error(self, message: str) -> Any:
        self.exit(2, f"edgectl: {message} (see '{self.prog} --help')\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        except TypeError:
            # A parser with subcommands or a '--' remainder (exec): argparse cannot intermix.
            return super().parse_known_args(args, namespace)
        finally:
            self._intermixing = False


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The connection options; on commands they default to 'not given' (SUPPRESS), so that
    one given before the command is not overwritten."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("connection (before or after the command)")
    group.add_argument(
        "--server",
        metavar="URL",
        default=default(DEFAULT_SERVER),
        help=f"cloudhub admin URL (default {DEFAULT_SERVER})",
    )
    group.add_argument(
        "--token",
        metavar="T",
        default=default(None),
        help=f"admin token (default: ${TOKEN_ENV} or DIR/admin.token)",
    )
    group.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        default=default(None),
        help="cloudhub's data dir: reads admin.token and ca.crt from it (default ./data/cloud)",
    )
    group.add_argument(
        "--ca-file",
        metavar="FILE",
        type=Path,
        default=default(None),
        help="CA certificate (PEM) to verify cloudhub",
    )


class _Commands:
    """Adds commands that all take the global options too."""

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers

    def add(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        parser: argparse.ArgumentParser = self._subparsers.add_parser(name, **kwargs)
        _global_options(parser, defaults=False)
        return parser


def _namespace_options(parser: argparse.ArgumentParser, *, lists: bool) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        default=argparse.SUPPRESS,  # may come before the command too (see build_parser)
        help="namespace (lists: every namespace unless given; NAME: default 'default')"
        if lists
        else "namespace (default 'default')",
    )
    if lists:
        parser.add_argument(
            "-A",
            "--all-namespaces",
            action="store_true",
            help="list across every namespace (the default without -n), with a NAMESPACE column",
        )
        parser.add_argument(
            "-l",
            "--selector",
            metavar="SELECTOR",
            help="label selector, e.g. app=web,tier!=db or 'env in (prod,staging)'",
        )


#: shell functions the completion scripts call to complete KIND (see cmd_completion)
COMPLETION_PREAMBLE = {
    "bash": "_edgectl_kinds() { compgen -W '" + " ".join(PLURALS) + '\' -- "$1"; }\n',
    "zsh": "",
}


def _kind_completion(action: argparse.Action) -> None:
    """KIND completes to the kinds' plurals (shtab reads ``action.complete``)."""
    action.complete = {  # type: ignore[attr-defined]
        "bash": "_edgectl_kinds",
        "zsh": "(" + " ".join(PLURALS) + ")",
    }


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgectl",
        description="Operate an edgebridge fleet through cloudhub's admin API.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, defaults=True)
    # kubectl takes -n before the command too; a command's own -n (SUPPRESS by default) wins
    parser.add_argument("-n", "--namespace", help=argparse.SUPPRESS)
    # ``commands`` is argparse's subparsers action: a module adds its commands with
    # ``commands.add_parser(...)`` (edgectl/streams.py: ``streams.register(commands)``).
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add = _Commands(commands).add
    kinds = aliases_help()

    token = add(
        "token",
        help="manage join tokens",
        description="Manage join tokens for 'edgecore join'.",
        epilog="example:\n  edgectl token create --ttl 2h",
    )
    token.set_defaults(group=token)
    create = _Commands(token.add_subparsers(dest="token_command", metavar="SUBCOMMAND")).add(
        "create",
        help="print a new join token",
        description=(
            "Print a new join token ({ca-hash}.{jwt}) on one line. Give it to "
            "'edgecore join --token'. Without --uses any number of nodes may use it until it "
            "expires; a token is a credential to join as any node name (or only --node), so "
            "keep it short-lived and single-use where you can."
        ),
        epilog=(
            "examples:\n  edgectl token create\n  edgectl token create --ttl 15m\n"
            "  edgectl token create --ttl 1h --uses 1 --node gw-17"
        ),
    )
    create.add_argument(
        "--ttl",
        default=DEFAULT_TTL,
        help=f"lifetime: 30s, 15m, 24h, 1h30m, 2d (default {DEFAULT_TTL})",
    )
    create.add_argument(
        "--uses", type=int, metavar="N", help="joins the token admits (default: unlimited)"
    )
    create.add_argument("--node", metavar="NAME", help="admit only this node name (default: any)")
    create.set_defaults(func=cmd.cmd_token_create)

    apply = add(
        "apply",
        help="create or update objects from manifests",
        description=(
            "Create or update Node, Pod, ConfigMap, Secret, Device and DeviceModel objects "
            "from YAML or JSON manifests (several documents per file, or a List). Everything "
            "is validated first; if one object is invalid, nothing is applied. Prints "
            "KIND/NAME created, configured or unchanged for each object."
        ),
        epilog=(
            "examples:\n  edgectl apply -f pod.yaml\n  edgectl apply -f devices.yaml -f pod.yaml"
            "\n  cat pod.json | edgectl apply -f -"
        ),
    )
    apply.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="manifest file, or - for stdin (repeatable)",
    )
    apply.set_defaults(func=cmd.cmd_apply)

    get = add(
        "get",
        help="show objects (tables, json, yaml, names, jsonpath; -w to watch)",
        description=(
            f"Show objects. KIND: {kinds}; several as KIND,KIND; or TYPE/NAME. Without NAME, "
            "all objects of the kind (in every namespace unless -n). 'get nodes' shows "
            "whether each node is connected (online/offline) and when it was last heard from; "
            "'get pods' shows READY, STATUS and RESTARTS from the pods' container statuses."
        ),
        epilog=(
            "examples:\n  edgectl get nodes\n  edgectl get pods -n default -o wide\n"
            "  edgectl get devices -n default thermostat-1\n  edgectl get nodes,pods\n"
            "  edgectl get pods -l app=web -o name\n  edgectl get pods -w\n"
            "  edgectl get nodes -o jsonpath='{.items[*].metadata.name}'"
        ),
    )
    _kind_completion(get.add_argument("args", nargs="*", metavar="KIND [NAME…]"))
    _namespace_options(get, lists=True)
    get.add_argument("-o", "--output", default="table", metavar="FORMAT", help=_OUTPUT_HELP)
    get.add_argument(
        "-w", "--watch", action="store_true", help="after listing, print changes as they happen"
    )
    get.add_argument(
        "--watch-only", action="store_true", help="print changes only, without the list first"
    )
    get.set_defaults(func=listing.cmd_get)

    describe = add(
        "describe",
        help="show one object in detail, with its events",
        description=(
            f"Show objects in detail: status, conditions and events. KIND: {kinds}. A node "
            "also lists the pods and devices bound to it; a device its properties (desired, "
            "reported, in sync). Without NAME, every object of the kind."
        ),
        epilog="examples:\n  edgectl describe node edge-1\n  edgectl describe pod nginx -n web",
    )
    _kind_completion(describe.add_argument("args", nargs="*", metavar="KIND [NAME…]"))
    _namespace_options(describe, lists=True)
    describe.set_defaults(func=cmd.cmd_describe)

    delete = add(
        "delete",
        help="delete objects",
        description=(
            f"Delete objects by KIND NAME…, TYPE/NAME, or the manifests in -f FILE. KIND: "
            f"{kinds}. Deleting a node also revokes every certificate it was issued and closes "
            "its link; it can come back only through 'edgecore join' with a new token."
        ),
        epilog=(
            "examples:\n  edgectl delete pod nginx\n  edgectl delete cm settings -n plant-1"
            "\n  edgectl delete -f pod.yaml\n  edgectl delete node gw-17"
        ),
    )
    _kind_completion(delete.add_argument("args", nargs="*", metavar="KIND NAME…"))
    delete.add_argument(
        "-f",
        "--filename",
        action="append",
        metavar="FILE",
        help="delete the objects in this manifest (or - for stdin; repeatable)",
    )
    _namespace_options(delete, lists=False)
    delete.set_defaults(func=cmd.cmd_delete)

    twin = add(
        "twin",
        help="device twins",
        description="Work with device twins.",
        epilog="example:\n  edgectl twin set thermostat target=21.5 mode=eco",
    )
    twin.set_defaults(group=twin)
    twin_set = _Commands(twin.add_subparsers(dest="twin_command", metavar="SUBCOMMAND")).add(
        "set",
        help="set desired property values of a device",
        description=(
            "Set spec.properties[].desired.value of a Device. Values are strings, as in "
            "KubeEdge; the edge sends them to the device's mapper as a twin delta. Every "
            "PROP must be a property the Device lists."
        ),
        epilog=(
            "examples:\n  edgectl twin set thermostat target=21.5\n"
            "  edgectl twin set pump-3 speed=1200 mode=auto -n plant-1"
        ),
    )
    twin_set.add_argument("device", metavar="DEVICE")
    twin_set.add_argument("assignments", metavar="PROP=VALUE", nargs="+")
    twin_set.add_argument(
        "-n", "--namespace", default=argparse.SUPPRESS, help="namespace (default 'default')"
    )
    twin_set.set_defaults(func=cmd.cmd_twin_set)

    streams.register(commands)

    resources = add(
        "api-resources",
        help="list the kinds of object and their short names",
        description="List the kinds edgectl and the admin API know, with their short names.",
    )
    resources.set_defaults(func=cmd.cmd_api_resources)

    version = add(
        "version",
        help="print the client and server versions",
        description="Print edgectl's version and the version of the cloudhub it talks to.",
        epilog="examples:\n  edgectl version\n  edgectl version --client -o json",
    )
    version.add_argument("--client", action="store_true", help="only the client's version")
    version.add_argument("-o", "--output", choices=("json", "yaml"), help="output format")
    version.set_defaults(func=cmd.cmd_version)

    completion = add(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script for edgectl's commands and options.",
        epilog=(
            "examples:\n  source <(edgectl completion bash)\n"
            '  edgectl completion zsh > "${fpath[1]}/_edgectl"'
        ),
    )
    completion.add_argument("shell", choices=("bash", "zsh"))
    completion.set_defaults(func=lambda ctx: cmd.cmd_completion(ctx, parser, COMPLETION_PREAMBLE))
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run edgectl; returns the exit code (argparse exits with 2 on usage errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[Context], int | None] | None = getattr(args, "func", None)
    if func is None:
        # A command group without its subcommand ("edgectl", "edgectl token").
        group: argparse.ArgumentParser = getattr(args, "group", parser)
        group.print_help(sys.stderr)
        return 2
    try:
        return func(Context(args, out or sys.stdout)) or 0
    except ServerSaid as exc:
        print(exc, file=sys.stderr)
        return 1
    except (UsageError, BridgeError) as exc:
        message = " ".join(str(exc).split())
        if isinstance(exc, InvalidObject) and not message:
            message = "invalid object"
        print(f"edgectl: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `edgectl get pods -w | head` stopped reading: no traceback at exit's flush either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
