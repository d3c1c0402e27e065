"""``edgectl get``: objects as tables, names, json, yaml or jsonpath, listed or watched.

Tables keep kubectl's habits (see :mod:`edgectl.render`); a watch (``-w``) prints the table,
then a row per change with the first rows' column widths, and starts over from a fresh list
when the server says it fell behind (410).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

import yaml

from edgectl.commands import Context, ServerSaid, UsageError, targets
from edgectl.jsonpath import JsonPathError, render
from edgectl.render import format_table, name_of, table_rows
from wire.errors import BridgeError, ConfigError
from wire.kinds import ApiKind

#: formats ``-o`` takes besides ``jsonpath=TEMPLATE``
OUTPUTS = ("table", "wide", "name", "json", "yaml")


def check_output(value: str) -> str:
    """``-o``'s value, checked before anything is fetched.

    Raises:
        UsageError: an unknown format or an empty or malformed jsonpath template.
    """
    if value in OUTPUTS:
        return value
    if value.startswith("jsonpath="):
        template = value.partition("=")[2]
        try:
            render(template, {})
        except JsonPathError as exc:
            raise UsageError(f"-o jsonpath: {exc}") from None
        if not template:
            raise UsageError(
                "-o jsonpath= needs a template, e.g. jsonpath={.items[*].metadata.name}"
            )
        return value
    raise UsageError(
        f"unknown output format {value!r} (expected one of {', '.join(OUTPUTS)}, jsonpath=…)"
    )


def cmd_get(ctx: Context) -> int:
    output = check_output(ctx.args.output)
    wanted = targets(ctx.args.args)
    selector = ctx.selector()
    if ctx.args.watch or ctx.args.watch_only:
        if len(wanted) != 1 or wanted[0][1]:
            raise UsageError("-w watches one kind, without names (use -l to narrow it)")
        if not wanted[0][0].mirrored:
            raise UsageError(f"{wanted[0][0].plural} cannot be watched; list them again instead")
        return _watch(ctx, wanted[0][0], output, selector)
    found: list[tuple[ApiKind, list[dict[str, Any]]]] = []
    missing: list[ServerSaid] = []
    for kind, names in wanted:
        if names:
            items = []
            for name in names:
                try:
                    items.append(ctx.fetch(kind, name))
                except ServerSaid as exc:
                    missing.append(exc)
        else:
            items = ctx.client.list(
                kind.plural, namespace=ctx.list_namespace(kind), selector=selector
            )
        found.append((kind, items))
    single = len(wanted) == 1 and len(wanted[0][1]) == 1 and not missing
    _print_objects(ctx, found, output, single=single)
    for said in missing:
        print(said, file=sys.stderr)
    return 1 if missing else 0


def _print_objects(
    ctx: Context,
    found: list[tuple[ApiKind, list[dict[str, Any]]]],
    output: str,
    *,
    single: bool,
) -> None:
    everything = [obj for _, items in found for obj in items]
    document: Any = (
        everything[0] if single else {"apiVersion": "v1", "kind": "List", "items": everything}
    )
    if output == "json":
        ctx.print(json.dumps(document, indent=2))
    elif output == "yaml":
        ctx.out.write(yaml.safe_dump(document, sort_keys=False))
    elif output.startswith("jsonpath="):
        ctx.print(render(output.partition("=")[2], document))
    elif output == "name":
        for kind, items in found:
            for obj in items:
                ctx.print(name_of(kind.plural, obj))
    elif not everything:
        if not any(names for names in ctx.args.args[1:]):
            ns = None if ctx.args.all_namespaces else ctx.args.namespace
            where = f" in {ns} namespace" if ns else ""
            print(f"No resources found{where}.", file=sys.stderr)
    else:
        tables = []
        for kind, items in found:
            if items:
                rows = table_rows(
                    kind.plural,
                    items,
                    ctx.now,
                    wide=output == "wide",
                    namespaces=_namespace_column(ctx, kind, single),
                    kind_names=len(found) > 1,
                )
                tables.append(format_table(rows))
        ctx.print("\n\n".join(tables))


def _namespace_column(ctx: Context, kind: ApiKind, single: bool) -> bool:
    if getattr(ctx.args, "all_namespaces", False):
        return True
    return (
        not single
        and kind.namespaced
        and ctx.list_namespace(kind) is None
        and not ctx.args.args[1:]
    )


def _watch(ctx: Context, kind: ApiKind, output: str, selector: str) -> int:
    namespace = ctx.list_namespace(kind)
    widths: list[int] = []
    rv = ""
    if not ctx.args.watch_only:
        items, rv = ctx.client.list_with_version(
            kind.plural, namespace=namespace, selector=selector
        )
        widths = _print_watched(ctx, kind, items, output, widths, header=True)
    while True:
        for line in ctx.client.watch(
            kind.plural, namespace=namespace, selector=selector, resource_version=rv
        ):
            if line.type == "BOOKMARK":
                rv = str((line.object.get("metadata") or {}).get("resourceVersion") or rv)
                continue
            if line.type == "ERROR":
                if line.object.get("code") == 410:
                    rv = ""  # fell behind: start over from a fresh list (sent as ADDED)
                    break
                raise BridgeError(f"watch failed: {line.object.get('message') or 'unknown'}")
            rv = str((line.object.get("metadata") or {}).get("resourceVersion") or rv)
            widths = _print_watched(ctx, kind, [line.object], output, widths, header=not widths)
        else:
            raise ConfigError("cloudhub ended the watch (was it stopped?)")


def _print_watched(
    ctx: Context,
    kind: ApiKind,
    items: list[dict[str, Any]],
    output: str,
    widths: list[int],
    *,
    header: bool,
) -> list[int]:
    """Print watched objects; tables keep the column widths of the first rows printed."""
    for obj in items if output not in ("table", "wide") else []:
        if output == "json":
            ctx.print(json.dumps(obj, indent=2))
        elif output == "yaml":
            ctx.out.write("---\n" + yaml.safe_dump(obj, sort_keys=False))
        elif output == "name":
            ctx.print(name_of(kind.plural, obj))
        else:
            ctx.print(render(output.partition("=")[2], obj))
    if output not in ("table", "wide") or (not items and not header):
        return widths
    rows = table_rows(
        kind.plural,
        items,
        dt.datetime.now(dt.UTC),
        wide=output == "wide",
        namespaces=_namespace_column(ctx, kind, single=False),
    )
    if not widths:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows if header else rows[1:]:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        ctx.print("   ".join(cells).rstrip())
    return widths
