"""A pod's volumes on the node's disk, and the mounts that put them in its containers.

Layout (kubelet's, under edged's own root): ``<root>/<uid>/volumes/<kind>/<volume>``.

- ``configMap`` / ``secret``: one file per key. Written on every sync that finds the content
  changed, each file atomically (written aside, then renamed over), keys no longer present
  removed: the directory is bind-mounted, so a container sees an edited ConfigMap's new file
  content without a restart, as with a kubelet.
- ``emptyDir``: a directory that lives as long as the pod on this node.
- ``hostPath``: the node's path itself; ``DirectoryOrCreate`` / ``FileOrCreate`` create it,
  other types want it to exist.

Blocking file work runs in a thread (:func:`asyncio.to_thread` in the module).
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
from pathlib import Path
from typing import Any

from edgecore.cri import api_pb2 as pb
from edgecore.edged.configs import ConfigRefError, Lookup
from edgecore.edged.podspec import Container, Pod, Volume


def pod_dir(root: Path, uid: str) -> Path:
    return root / uid


def _write_atomic(path: Path, data: bytes, mode: int) -> bool:
    """Write ``data`` to ``path`` unless it holds it already; True when written."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def _sync_files(target: Path, files: dict[str, bytes], mode: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if "/" in name or name in ("", ".", ".."):
            continue
        _write_atomic(target / name, data, mode)
    for existing in target.iterdir():
        if existing.name not in files and not existing.name.startswith("."):
            existing.unlink(missing_ok=True)


def _configmap_files(obj: dict[str, Any]) -> dict[str, bytes]:
    files = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    for k, v in (obj.get("binaryData") or {}).items():
        try:
            files[k] = base64.b64decode(str(v))
        except (binascii.Error, ValueError):
            continue
    return files


def _secret_files(obj: dict[str, Any]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for k, v in (obj.get("data") or {}).items():
        try:
            files[k] = base64.b64decode(str(v))
        except (binascii.Error, ValueError):
            continue
    for k, v in (obj.get("stringData") or {}).items():
        files[k] = str(v).encode()
    return files


def volume_path(root: Path, pod: Pod, volume: Volume) -> Path:
    """Where ``volume`` is on the node (for hostPath: the path itself)."""
    if volume.hostPath is not None:
        return Path(volume.hostPath.path)
    kind = "configmap" if volume.configMap else "secret" if volume.secret else "empty-dir"
    return pod_dir(root, pod.metadata.uid) / "volumes" / kind / volume.name


def prepare_volumes(root: Path, pod: Pod, lookup: Lookup) -> dict[str, Path]:
    """Create or refresh every volume of ``pod``; volume name -> host path.

    Raises:
        ConfigRefError: a referenced configmap/secret is missing (and not optional), or a
            hostPath that must exist does not.
    """
    ns = pod.metadata.namespace
    out: dict[str, Path] = {}
    for volume in pod.spec.volumes:
        path = volume_path(root, pod, volume)
        if volume.configMap is not None:
            obj = lookup("configmap", ns, volume.configMap.name)
            if obj is None and not volume.configMap.optional:
                raise ConfigRefError(f'configmap "{volume.configMap.name}" not found')
            _sync_files(path, _configmap_files(obj or {}), 0o644)
        elif volume.secret is not None:
            obj = lookup("secret", ns, volume.secret.secretName)
            if obj is None and not volume.secret.optional:
                raise ConfigRefError(f'secret "{volume.secret.secretName}" not found')
            _sync_files(path, _secret_files(obj or {}), 0o600)
        elif volume.hostPath is not None:
            kind = volume.hostPath.type
            if kind == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch(exist_ok=True)
            elif not path.exists():
                raise ConfigRefError(f"hostPath {path} does not exist")
        else:  # emptyDir, and any volume kind edged does not know: an empty directory
            path.mkdir(parents=True, exist_ok=True)
        out[volume.name] = path
    return out


def mounts(container: Container, paths: dict[str, Path]) -> list[pb.Mount]:
    out = []
    for m in container.volumeMounts:
        host = paths[m.name]
        if m.subPath:
            host = host / m.subPath
        out.append(pb.Mount(container_path=m.mountPath, host_path=str(host), readonly=m.readOnly))
    return out


def remove_pod_dir(root: Path, uid: str) -> None:
    """Forget a pod's volumes (after its sandbox is gone)."""
    shutil.rmtree(pod_dir(root, uid), ignore_errors=True)
