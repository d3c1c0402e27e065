"""``edgectl``: operate the fleet through cloudhub's admin API.

The command line is the contract (see CONTRACT.md): global options before the command, then
``token create``, ``apply``, ``get``, ``delete`` or ``twin set``. Conventions:

- **One line on stderr for every failure**, prefixed ``edgectl:``, naming the problem (the kind,
  the property, the document). Exit code 1 for bad input or a refusal, 2 for usage errors
  (argparse's convention), 0 otherwise.
- **Manifests are validated locally before anything is sent**, with the same checks the server
  runs (:mod:`wire.manifests`), so a typo is reported with its file and document number; the
  server validates again and applies all or nothing.
- **Credentials**: ``--token``, else ``EDGECTL_TOKEN``, else ``DATA_DIR/admin.token``; the CA
  for TLS: ``--ca-file``, else ``DATA_DIR/ca.crt``. ``DATA_DIR`` is ``--data-dir``, else
  ``./data/cloud`` when it exists (cloudhub's default), so on the cloud host plain ``edgectl``
  just works.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from edgectl.client import CONNECT_WAIT, AdminClient, wait_for_files
from edgectl.render import format_table, meta, table_rows
from wire.devicemodel import desired_problems
from wire.errors import BridgeError, ConfigError, InvalidObject, NotFound
from wire.manifests import load
from wire.resources import CLUSTER_SCOPED_TYPES, KIND_TO_TYPE

DEFAULT_SERVER = "https://127.0.0.1:10002"
DEFAULT_DATA_DIR = Path("data/cloud")
TOKEN_ENV = "EDGECTL_TOKEN"
DEFAULT_TTL = "24h"

#: Every spelling of a kind edgectl accepts -> the admin API's plural.
KIND_ALIASES: dict[str, str] = {
    "nodes": "nodes",
    "node": "nodes",
    "no": "nodes",
    "pods": "pods",
    "pod": "pods",
    "po": "pods",
    "configmaps": "configmaps",
    "configmap": "configmaps",
    "cm": "configmaps",
    "secrets": "secrets",
    "secret": "secrets",
    "devices": "devices",
    "device": "devices",
    "devicemodels": "devicemodels",
    "devicemodel": "devicemodels",
}
PLURALS = ("nodes", "pods", "configmaps", "secrets", "devices", "devicemodels")
#: plural -> the singular resource type printed in ``pod/default/nginx created`` lines
PLURAL_TO_TYPE = {
    "nodes": "node",
    "pods": "pod",
    "configmaps": "configmap",
    "secrets": "secret",
    "devices": "device",
    "devicemodels": "devicemodel",
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


class UsageError(Exception):
    """Bad input the user can fix; printed as one line, exit code 1."""


# -- pure helpers --------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """``30s``, ``15m``, ``24h``, ``1h30m``, ``2d``, or plain seconds -> seconds (> 0).

    Raises:
        UsageError: anything else, or zero.
    """
    value = text.strip()
    seconds: float
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(value) or not value:
            raise UsageError(f"invalid duration {text!r} (use e.g. 30s, 15m, 24h, 1h30m)") from None
    if not 0 < seconds < float("inf"):
        raise UsageError(f"invalid duration {text!r}: must be more than zero")
    return seconds


def resolve_kind(kind: str) -> str:
    """Any accepted spelling of a kind -> the API's plural.

    Raises:
        UsageError: an unknown kind, naming the accepted ones.
    """
    plural = KIND_ALIASES.get(kind.lower())
    if plural is None:
        raise UsageError(f"unknown kind {kind!r} (expected one of {', '.join(PLURALS)})")
    return plural


def object_ref(obj: dict[str, Any]) -> str:
    """``pod/default/nginx`` or ``node/edge-1``: how output lines name an object."""
    kind = obj.get("kind")
    typ = KIND_TO_TYPE.get(kind, str(kind).lower()) if isinstance(kind, str) else "object"
    meta = obj.get("metadata") or {}
    name = meta.get("name", "?")
    if typ in CLUSTER_SCOPED_TYPES or not meta.get("namespace"):
        return f"{typ}/{name}"
    return f"{typ}/{meta['namespace']}/{name}"


def set_desired(device: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """A copy of ``device`` with ``spec.properties[].desired.value`` set for each of ``values``.

    Raises:
        UsageError: a property the device does not have (named in the message).
    """
    out = copy.deepcopy(device)
    props = (out.get("spec") or {}).get("properties") or []
    by_name = {p.get("name"): p for p in props if isinstance(p, dict)}
    for prop, value in values.items():
        entry = by_name.get(prop)
        if entry is None:
            known = ", ".join(str(n) for n in by_name) or "none"
            raise UsageError(
                f"device {meta(device, 'namespace')}/{meta(device, 'name')} has no property "
                f"{prop!r} (properties: {known})"
            )
        desired = entry.get("desired")
        if not isinstance(desired, dict):
            desired = entry["desired"] = {}
        desired["value"] = value
    return out


def parse_assignments(pairs: Sequence[str]) -> dict[str, str]:
    """``["temp=25", "mode=eco"]`` -> ``{"temp": "25", "mode": "eco"}``.

    Raises:
        UsageError: an item without ``=`` or with an empty property name.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        prop, sep, value = pair.partition("=")
        if not sep or not prop:
            raise UsageError(f"expected PROP=VALUE, got {pair!r}")
        out[prop] = value
    return out


# -- commands ------------------------------------------------------------------------------


class Context:
    """What every command needs: the client (built lazily) and the output streams."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self._client: AdminClient | None = None

    @property
    def client(self) -> AdminClient:
        if self._client is None:
            self._client = _make_client(self.args)
        return self._client

    def print(self, text: str) -> None:
        self.out.write(text + "\n")


def _make_client(args: argparse.Namespace) -> AdminClient:
    data_dir: Path | None = args.data_dir
    if data_dir is None and DEFAULT_DATA_DIR.is_dir():
        data_dir = DEFAULT_DATA_DIR
    elif data_dir is not None:
        # a cloudhub started a moment ago creates its data dir, CA and token within seconds
        wait_for_files(data_dir, ("ca.crt", "admin.token"), timeout=CONNECT_WAIT, on_wait=_tell)
        if not data_dir.is_dir():
            raise ConfigError(f"--data-dir {data_dir} is not a directory")
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if token is None and data_dir is not None:
        path = data_dir / "admin.token"
        try:
            token = path.read_text().strip() or None
        except FileNotFoundError:
            token = None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if token is None:
        raise ConfigError(
            f"no admin token: pass --token, set {TOKEN_ENV}, or --data-dir DIR "
            "(cloudhub's data dir; reads DIR/admin.token)"
        )
    ca_file: Path | None = args.ca_file
    if ca_file is None and data_dir is not None and (data_dir / "ca.crt").exists():
        ca_file = data_dir / "ca.crt"
    return AdminClient(server=args.server, token=token, ca_file=ca_file, on_wait=_tell)


def _tell(message: str) -> None:
    print(f"edgectl: {message}", file=sys.stderr)


def cmd_token_create(ctx: Context) -> None:
    ttl = parse_duration(ctx.args.ttl)
    uses: int | None = ctx.args.uses
    if uses is not None and uses < 1:
        raise UsageError(f"--uses must be at least 1, not {uses}")
    # The token is the only thing printed, and nothing else ever logs it.
    ctx.print(ctx.client.create_token(ttl, uses=uses, node=ctx.args.node))


def cmd_apply(ctx: Context) -> None:
    objects: list[dict[str, Any]] = []
    for source in ctx.args.filename:
        objects.extend(load(_read_source(source), source=source))
    if not objects:
        raise UsageError("no objects found in " + ", ".join(ctx.args.filename))
    result = ctx.client.apply(objects)
    for obj, action in zip(result.objects, result.actions, strict=True):
        ctx.print(f"{object_ref(obj)} {action}")
    for warning in result.warnings:
        print(f"Warning: {warning}", file=sys.stderr)


def _read_source(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text()
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {source}: {exc}") from None


def cmd_get(ctx: Context) -> None:
    plural = resolve_kind(ctx.args.kind)
    now = dt.datetime.now(dt.UTC)
    items: list[dict[str, Any]]
    if ctx.args.name:
        obj = ctx.client.get(plural, _namespace_for(plural, ctx.args.namespace), ctx.args.name)
        items = [obj]
        document: Any = obj
    else:
        namespace = None if PLURAL_TO_TYPE[plural] in CLUSTER_SCOPED_TYPES else ctx.args.namespace
        items = ctx.client.list(plural, namespace=namespace)
        document = {"apiVersion": "v1", "kind": "List", "items": items}
    if ctx.args.output == "json":
        ctx.print(json.dumps(document, indent=2, sort_keys=False))
    elif ctx.args.output == "yaml":
        ctx.out.write(yaml.safe_dump(document, sort_keys=False))
    elif not items:
        where = f" in namespace {ctx.args.namespace}" if ctx.args.namespace else ""
        print(f"No {plural} found{where}.", file=sys.stderr)
    else:
        ctx.print(format_table(table_rows(plural, items, now)))


def _namespace_for(plural: str, namespace: str | None) -> str | None:
    if PLURAL_TO_TYPE[plural] in CLUSTER_SCOPED_TYPES:
        return None
    return namespace or "default"


def cmd_delete(ctx: Context) -> None:
    plural = resolve_kind(ctx.args.kind)
    obj = ctx.client.delete(plural, _namespace_for(plural, ctx.args.namespace), ctx.args.name)
    revoked = " (certificates revoked, link closed)" if plural == "nodes" else ""
    ctx.print(f"{object_ref(obj)} deleted{revoked}")


def cmd_twin_set(ctx: Context) -> None:
    values = parse_assignments(ctx.args.assignments)
    namespace = ctx.args.namespace or "default"
    try:
        device = ctx.client.get("devices", namespace, ctx.args.device)
    except NotFound:
        raise UsageError(f"device {namespace}/{ctx.args.device} not found") from None
    updated = set_desired(device, values)
    model_name = ((device.get("spec") or {}).get("deviceModelRef") or {}).get("name")
    if model_name:
        try:
            model = ctx.client.get("devicemodels", namespace, str(model_name))
        except NotFound:
            model = None
        if model is not None:
            problems = desired_problems(updated, model)
            if problems:
                raise UsageError(f"device {namespace}/{ctx.args.device}: {problems[0]}")
    # Without status the store keeps the stored one: the twin's reported values, written by
    # the edge meanwhile, must not be rolled back to what we read a moment ago.
    updated.pop("status", None)
    result = ctx.client.apply([updated])
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    ctx.print(f"{object_ref(result.objects[0])} {result.actions[0]} ({shown})")


# -- argument parsing ----------------------------------------------------------------------

_MAIN_EPILOG = """\
examples:
  edgectl token create --ttl 1h                 # a join token for 'edgecore join'
  edgectl apply -f pod.yaml                     # create or update objects
  edgectl get nodes                             # which edge nodes are online
  edgectl get pods -n default -o json
  edgectl twin set thermostat target=21.5       # set a device's desired value
  edgectl delete pod nginx

credentials: --token, else $EDGECTL_TOKEN, else DIR/admin.token with --data-dir DIR
(default ./data/cloud when it exists). TLS is verified with --ca-file, else DIR/ca.crt."""

_KINDS_HELP = (
    "nodes (node, no), pods (pod, po), configmaps (configmap, cm), secrets (secret), "
    "devices (device), devicemodels (devicemodel)"
)


class _Parser(argparse.ArgumentParser):
    """argparse with edgectl's one-line error style (still exit code 2 for usage errors)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"edgectl: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="edgectl",
        description="Operate an edgebridge fleet through cloudhub's admin API.",
        epilog=_MAIN_EPILOG,
        formatter_class=fmt,
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        default=DEFAULT_SERVER,
        help=f"cloudhub admin URL (default {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--token", metavar="T", help=f"admin token (default: ${TOKEN_ENV} or DIR/admin.token)"
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        help="cloudhub's data dir: reads admin.token and ca.crt from it (default ./data/cloud)",
    )
    parser.add_argument(
        "--ca-file", metavar="FILE", type=Path, help="CA certificate (PEM) to verify cloudhub"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    token = commands.add_parser(
        "token",
        help="manage join tokens",
        description="Manage join tokens for 'edgecore join'.",
        epilog="example:\n  edgectl token create --ttl 2h",
        formatter_class=fmt,
    )
    token.set_defaults(group=token)
    token_commands = token.add_subparsers(dest="token_command", metavar="SUBCOMMAND")
    create = token_commands.add_parser(
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
        formatter_class=fmt,
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
    create.set_defaults(func=cmd_token_create)

    apply = commands.add_parser(
        "apply",
        help="create or update objects from manifests",
        description=(
            "Create or update Node, Pod, ConfigMap, Secret, Device and DeviceModel objects "
            "from YAML or JSON manifests (several documents per file, or a List). Everything "
            "is validated first; if one object is invalid, nothing is applied."
        ),
        epilog=(
            "examples:\n  edgectl apply -f pod.yaml\n  edgectl apply -f devices.yaml -f pod.yaml"
            "\n  cat pod.json | edgectl apply -f -"
        ),
        formatter_class=fmt,
    )
    apply.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="manifest file, or - for stdin (repeatable)",
    )
    apply.set_defaults(func=cmd_apply)

    get = commands.add_parser(
        "get",
        help="show objects",
        description=(
            f"Show objects of one kind. KIND: {_KINDS_HELP}. Without NAME, all objects of "
            "the kind (in every namespace unless -n). 'get nodes' shows whether each node is "
            "connected (online/offline) and when it was last heard from."
        ),
        epilog=(
            "examples:\n  edgectl get nodes\n  edgectl get pods -n default\n"
            "  edgectl get device thermostat -o yaml\n  edgectl get nodes -o json"
        ),
        formatter_class=fmt,
    )
    get.add_argument("kind", metavar="KIND")
    get.add_argument("name", metavar="NAME", nargs="?")
    get.add_argument(
        "-n", "--namespace", help="namespace (lists: all namespaces; NAME: default 'default')"
    )
    get.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "yaml"),
        default="table",
        help="output format (default table; json/yaml print the objects as the API has them)",
    )
    get.set_defaults(func=cmd_get)

    delete = commands.add_parser(
        "delete",
        help="delete an object",
        description=(
            f"Delete one object. KIND: {_KINDS_HELP}. Deleting a node also revokes every "
            "certificate it was issued and closes its link; it can come back only through "
            "'edgecore join' with a new token."
        ),
        epilog=(
            "examples:\n  edgectl delete pod nginx\n  edgectl delete cm settings -n plant-1"
            "\n  edgectl delete node gw-17"
        ),
        formatter_class=fmt,
    )
    delete.add_argument("kind", metavar="KIND")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("-n", "--namespace", help="namespace (default 'default')")
    delete.set_defaults(func=cmd_delete)

    twin = commands.add_parser(
        "twin",
        help="device twins",
        description="Work with device twins.",
        epilog="example:\n  edgectl twin set thermostat target=21.5 mode=eco",
        formatter_class=fmt,
    )
    twin.set_defaults(group=twin)
    twin_commands = twin.add_subparsers(dest="twin_command", metavar="SUBCOMMAND")
    twin_set = twin_commands.add_parser(
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
        formatter_class=fmt,
    )
    twin_set.add_argument("device", metavar="DEVICE")
    twin_set.add_argument("assignments", metavar="PROP=VALUE", nargs="+")
    twin_set.add_argument("-n", "--namespace", help="namespace (default 'default')")
    twin_set.set_defaults(func=cmd_twin_set)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run edgectl; returns the exit code (argparse exits with 2 on usage errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[Context], None] | None = getattr(args, "func", None)
    if func is None:
        # A command group without its subcommand ("edgectl", "edgectl token").
        group: argparse.ArgumentParser = getattr(args, "group", parser)
        group.print_help(sys.stderr)
        return 2
    try:
        func(Context(args, out or sys.stdout))
    except (UsageError, BridgeError) as exc:
        message = " ".join(str(exc).split())
        if isinstance(exc, InvalidObject) and not message:
            message = "invalid object"
        print(f"edgectl: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
