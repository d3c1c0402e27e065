"""``python -m edgectl`` as a user runs it: exit codes, stdin manifests, help texts."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloudhub.pki import Authority
from cloudhub.store.embedded import EmbeddedStore
from tests.support.inproc import https_port


@dataclass
class Cloud:
    authority: Authority
    store: EmbeddedStore
    data_dir: Path
    server: str


@dataclass
class Done:
    code: int
    out: str
    err: str


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    data = tmp_path / "cloud"
    authority = Authority.load_or_create(data, advertise=[])
    store = EmbeddedStore(data / "store.db")
    await store.start()
    async with https_port(authority, store) as server:
        yield Cloud(authority, store, data, server)
    await store.close()


async def edgectl(*argv: str, stdin: str = "", cwd: Path | None = None) -> Done:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgectl",
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())


async def test_token_create_then_apply_from_stdin(cloud: Cloud) -> None:
    """The process prints a token, applies JSON from stdin and reads it back as JSON."""
    flags = ("--server", cloud.server, "--data-dir", str(cloud.data_dir))
    done = await edgectl(*flags, "token", "create", "--ttl", "30s")
    assert done.code == 0, done.err
    cloud.authority.verify_join_token(done.out.strip())

    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "plant-1"},
        "data": {"mode": "eco"},
    }
    done = await edgectl(*flags, "apply", "-f", "-", stdin=json.dumps(cm))
    assert (done.code, done.out) == (0, "configmap/settings created\n"), done.err
    done = await edgectl(*flags, "get", "cm", "settings", "-n", "plant-1", "-o", "json")
    assert json.loads(done.out)["data"] == {"mode": "eco"}


async def test_bad_input_exit_codes(cloud: Cloud) -> None:
    """Unknown kind and invalid manifest exit 1 with one line; usage errors exit 2."""
    flags = ("--server", cloud.server, "--data-dir", str(cloud.data_dir))
    done = await edgectl(*flags, "get", "widgets")
    assert done.code == 1
    assert done.err.startswith("edgectl: unknown kind 'widgets'") and done.err.count("\n") == 1

    done = await edgectl(*flags, "apply", "-f", "-", stdin="kind: Pod\nmetadata: {name: x}\n")
    assert done.code == 1 and done.err.count("\n") == 1
    assert "apiVersion" in done.err
    assert (await cloud.store.list("pod"))[0] == []

    done = await edgectl(*flags, "get")
    assert done.code == 1 and "you must name a kind" in done.err
    done = await edgectl(*flags, "frobnicate")
    assert done.code == 2


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), ["token", "apply", "get", "delete", "twin", "EDGECTL_TOKEN", "--data-dir"]),
        (("token", "create"), ["--ttl", "30s", "15m", "24h"]),
        (("apply",), ["-f", "nothing is applied", "edgectl apply -f"]),
        (("get",), ["configmaps (configmap, cm)", "-o", "online/offline"]),
        (("twin", "set"), ["PROP=VALUE", "desired.value", "edgectl twin set"]),
    ],
)
async def test_help_texts_explain_commands(argv: tuple[str, ...], expected: list[str]) -> None:
    """Every command's --help explains it with examples."""
    done = await edgectl(*argv, "--help")
    assert done.code == 0
    for text in expected:
        assert text in done.out, text
