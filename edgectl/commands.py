"""What each edgectl command does, given parsed arguments (the parser is in :mod:`edgectl.cli`).

Conventions, kubectl's where it has one:

- A named object that does not exist answers ``Error from server (NotFound): pods "nope" not
  found`` (exit 1); other failures are one line prefixed ``edgectl:`` (exit 1).
- Lists span every namespace unless ``-n`` is given (``-A`` says so explicitly); the NAMESPACE
  column shows when they do.
- ``-o`` is ``table`` (default), ``wide``, ``name``, ``json``, ``yaml`` or
  ``jsonpath=TEMPLATE``; json and yaml print the objects as the API has them (a List for
  several).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from edgectl.client import CONNECT_WAIT, AdminClient, wait_for_files
from edgectl.describe import describe
from edgectl.render import format_table, meta
from wire.admin import VersionInfo
from wire.devicemodel import desired_problems
from wire.durations import parse_duration
from wire.errors import AuthError, BridgeError, ConfigError, InvalidResource, NotFound
from wire.kinds import BY_KIND, BY_PLURAL, KINDS, ApiKind, resolve
from wire.manifests import load
from wire.resources import key_of
from wire.selectors import parse_selector

DEFAULT_SERVER = "https://127.0.0.1:10002"
DEFAULT_DATA_DIR = Path("data/cloud")
TOKEN_ENV = "EDGECTL_TOKEN"
DEFAULT_TTL = "24h"


class UsageError(Exception):
    """Bad input the user can fix; printed as one line, exit code 1."""


class ServerSaid(Exception):
    """An answer printed as it is, kubectl-style (``Error from server (NotFound): …``)."""


def not_found(kind: ApiKind, name: str) -> ServerSaid:
    """kubectl's line for a named object that does not exist."""
    return ServerSaid(f'Error from server (NotFound): {kind.plural} "{name}" not found')


# -- pure helpers --------------------------------------------------------------------------


def object_ref(obj: dict[str, Any]) -> str:
    """``pod/nginx``: how kubectl's action lines (``created``, ``deleted``) name an object."""
    kind = BY_KIND.get(str(obj.get("kind")))
    typ = kind.type if kind is not None else str(obj.get("kind") or "object").lower()
    return f"{typ}/{meta(obj, 'name') or '?'}"


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


def targets(words: Sequence[str]) -> list[tuple[ApiKind, list[str]]]:
    """``KIND[,KIND…] [NAME…]`` or ``KIND/NAME…`` -> kinds with the names asked for.

    Raises:
        UsageError: no kind, an unknown kind, or TYPE/NAME mixed with plain names.
    """
    if not words:
        raise UsageError(
            "you must name a kind, e.g. 'edgectl get pods' (kinds: " + ", ".join(BY_PLURAL) + ")"
        )
    try:
        if "/" in words[0]:
            out: dict[ApiKind, list[str]] = {}
            for word in words:
                typ, sep, name = word.partition("/")
                if not sep or not name:
                    raise UsageError(f"expected TYPE/NAME, got {word!r}")
                out.setdefault(resolve(typ), []).append(name)
            return list(out.items())
        kinds = [resolve(k) for k in words[0].split(",") if k]
    except InvalidResource as exc:
        raise UsageError(str(exc)) from None
    if any("/" in w for w in words[1:]):
        raise UsageError("there is no need to give a kind with TYPE/NAME after KIND")
    return [(k, list(words[1:])) for k in dict.fromkeys(kinds)]


# -- the context every command gets --------------------------------------------------------


class Context:
    """What every command needs: the arguments, the client (built lazily), the output."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self._client: AdminClient | None = None
        self.now = dt.datetime.now(dt.UTC)

    @property
    def client(self) -> AdminClient:
        if self._client is None:
            self._client = make_client(self.args)
        return self._client

    def print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def namespace_for(self, kind: ApiKind) -> str | None:
        """The namespace of a named object: ``-n``, else ``default`` (None: cluster-scoped)."""
        return (getattr(self.args, "namespace", None) or "default") if kind.namespaced else None

    def list_namespace(self, kind: ApiKind) -> str | None:
        """The namespace a list is limited to (None: all of them)."""
        if not kind.namespaced or getattr(self.args, "all_namespaces", False):
            return None
        ns: str | None = getattr(self.args, "namespace", None)
        return ns

    def selector(self) -> str:
        """``-l``'s selector, checked here so that a typo is reported before any request."""
        text: str = getattr(self.args, "selector", None) or ""
        parse_selector(text)
        return text

    def fetch(self, kind: ApiKind, name: str) -> dict[str, Any]:
        """One object, or kubectl's NotFound line."""
        try:
            return self.client.get(kind.plural, self.namespace_for(kind), name)
        except NotFound:
            raise not_found(kind, name) from None


def make_client(args: argparse.Namespace) -> AdminClient:
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


# -- commands ------------------------------------------------------------------------------


def cmd_token_create(ctx: Context) -> int:
    ttl = parse_duration(ctx.args.ttl)
    uses: int | None = ctx.args.uses
    if uses is not None and uses < 1:
        raise UsageError(f"--uses must be at least 1, not {uses}")
    # The token is the only thing printed, and nothing else ever logs it.
    ctx.print(ctx.client.create_token(ttl, uses=uses, node=ctx.args.node))
    return 0


def _read_manifests(sources: Sequence[str]) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for source in sources:
        objects.extend(load(_read_source(source), source=source))
    if not objects:
        raise UsageError("no objects found in " + ", ".join(sources))
    return objects


def cmd_apply(ctx: Context) -> int:
    result = ctx.client.apply(_read_manifests(ctx.args.filename))
    for obj, action in zip(result.objects, result.actions, strict=True):
        ctx.print(f"{object_ref(obj)} {action}")
    for warning in result.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    return 0


def _read_source(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text()
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {source}: {exc}") from None


def cmd_describe(ctx: Context) -> int:
    wanted = targets(ctx.args.args)
    selector = ctx.selector()
    events = _events(ctx)
    texts: list[str] = []
    missing: list[ServerSaid] = []
    for kind, names in wanted:
        objects: list[dict[str, Any]] = []
        for name in names:
            try:
                objects.append(ctx.fetch(kind, name))
            except ServerSaid as exc:
                missing.append(exc)
        if not names:
            objects = ctx.client.list(
                kind.plural, namespace=ctx.list_namespace(kind), selector=selector
            )
        for obj in objects:
            pods = devices = None
            if kind.plural == "nodes":
                pods = _bound(ctx, "pods", meta(obj, "name"))
                devices = _bound(ctx, "devices", meta(obj, "name"))
            texts.append(
                describe(kind, obj, events=events, pods=pods, devices=devices, now=ctx.now)
            )
    if texts:
        ctx.print("\n\n\n".join(texts))
    elif not missing:
        print("No resources found.", file=sys.stderr)
    for said in missing:
        print(said, file=sys.stderr)
    return 1 if missing else 0


def _bound(ctx: Context, plural: str, node: str) -> list[dict[str, Any]]:
    items = ctx.client.list(plural)
    return [o for o in items if (o.get("spec") or {}).get("nodeName") == node]


def _events(ctx: Context) -> list[dict[str, Any]] | None:
    """Every event the server keeps, or None when it keeps none (a cloudhub that records
    none answers 503; an older one 404/400)."""
    try:
        return ctx.client.list("events")
    except (AuthError, ConfigError):
        raise
    except BridgeError:
        return None


def cmd_delete(ctx: Context) -> int:
    if ctx.args.filename:
        if ctx.args.args:
            raise UsageError("give either -f FILE or KIND NAME, not both")
        keys = [(BY_KIND[o["kind"]], key_of(o)) for o in _read_manifests(ctx.args.filename)]
        wanted = [(kind, key.namespace, key.name) for kind, key in keys]
    else:
        pairs = targets(ctx.args.args)
        if not all(names for _, names in pairs):
            raise UsageError("name what to delete: KIND NAME [NAME…], TYPE/NAME or -f FILE")
        wanted = [(k, ctx.namespace_for(k), n) for k, names in pairs for n in names]
    failed = 0
    for kind, namespace, name in wanted:
        try:
            obj = ctx.client.delete(kind.plural, namespace, name)
        except NotFound:
            print(not_found(kind, name), file=sys.stderr)
            failed += 1
            continue
        revoked = " (certificates revoked, link closed)" if kind.plural == "nodes" else ""
        ctx.print(f"{object_ref(obj)} deleted{revoked}")
    return 1 if failed else 0


def cmd_twin_set(ctx: Context) -> int:
    values = parse_assignments(ctx.args.assignments)
    namespace = ctx.args.namespace or "default"
    try:
        device = ctx.client.get("devices", namespace, ctx.args.device)
    except NotFound:
        raise not_found(BY_PLURAL["devices"], ctx.args.device) from None
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
    return 0


def cmd_version(ctx: Context) -> int:
    output = ctx.args.output
    client = VersionInfo()
    server: VersionInfo | None = None
    failure: BridgeError | None = None
    if not ctx.args.client:
        try:
            server = ctx.client.version()
        except BridgeError as exc:
            failure = exc
    if output in ("json", "yaml"):
        doc: dict[str, Any] = {"clientVersion": client.model_dump(exclude={"store"})}
        if server is not None:
            doc["serverVersion"] = server.model_dump()
        text = json.dumps(doc, indent=2) if output == "json" else yaml.safe_dump(doc).rstrip()
        ctx.print(text)
    else:
        ctx.print(f"Client Version: v{client.version}")
        if server is not None:
            ctx.print(f"Server Version: v{server.version} (store: {server.store})")
    if failure is not None:
        raise failure
    return 0


def cmd_api_resources(ctx: Context) -> int:
    """The kinds edgectl knows, as ``kubectl api-resources`` lists them (no server call)."""
    rows = [["NAME", "SHORTNAMES", "NAMESPACED", "KIND"]]
    for kind in KINDS:
        short = ",".join(a for a in kind.aliases if a != kind.type)
        rows.append([kind.plural, short, str(kind.namespaced).lower(), kind.kind])
    ctx.print(format_table(rows))
    return 0


def cmd_completion(ctx: Context, parser: argparse.ArgumentParser, preamble: dict[str, str]) -> int:
    import shtab  # only this command needs it

    shell: str = ctx.args.shell
    ctx.out.write(shtab.complete(parser, shell=shell, preamble=preamble.get(shell, "")))
    return 0
