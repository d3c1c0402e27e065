"""Build the busybox and pause OCI images offline from Debian's busybox-static.

Deterministic: the same busybox binary gives byte-identical archives (sorted entries, mtime 0,
uid/gid 0, gzip without a timestamp). Both images share one layer; they differ only in their
config (the pause image's entrypoint sleeps forever and holds the pod's namespaces).

Usage: python3 scripts/build_images.py OUT_DIR  -> OUT_DIR/busybox.tar, OUT_DIR/pause.tar
Standard library only: it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

BUSYBOX = Path(os.environ.get("BUSYBOX", "/bin/busybox"))
IMAGES = {
    # the names a pod spec's `image: busybox` (or busybox:1.36, as in examples/) resolves to,
    # as Kubernetes normalises it
    "busybox": (
        ["docker.io/library/busybox:latest", "docker.io/library/busybox:1.36"],
        None,
        ["sh"],
    ),
    "pause": (["localhost/edgebridge/pause:1"], ["/bin/sleep", "2147483647"], None),
}
ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hosts": "127.0.0.1 localhost\n",
}


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = kind, mode, 0, 0, 0, "", ""
    return ti


def layer() -> bytes:
    """The root filesystem: busybox, a symlink per applet, a few files in /etc."""
    applets = subprocess.run(
        [str(BUSYBOX), "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in (
            "bin",
            "dev",
            "etc",
            "proc",
            "root",
            "sbin",
            "sys",
            "tmp",
            "usr",
            "usr/bin",
            "usr/sbin",
            "var",
        ):
            tar.addfile(_info(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
        data = BUSYBOX.read_bytes()
        ti = _info("bin/busybox", tarfile.REGTYPE, 0o755)
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
        for path in sorted(set(applets)):
            if path == "bin/busybox" or path.count("/") < 1:
                continue
            link = _info(path, tarfile.SYMTYPE, 0o777)
            link.linkname = "/bin/busybox"
            tar.addfile(link)
        for path, text in sorted(ETC.items()):
            raw = text.encode()
            ti = _info(path, tarfile.REGTYPE, 0o644)
            ti.size = len(raw)
            tar.addfile(ti, io.BytesIO(raw))
    return buf.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    ti = _info(f"blobs/sha256/{digest}", tarfile.REGTYPE, 0o644)
    ti.size = len(data)
    tar.addfile(ti, io.BytesIO(data))
    return f"sha256:{digest}"


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build(out: Path) -> None:
    raw = layer()
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    gz = gzip.compress(raw, compresslevel=6, mtime=0)
    for short, (refs, entrypoint, cmd) in IMAGES.items():
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                **({"Entrypoint": entrypoint} if entrypoint else {}),
                **({"Cmd": cmd} if cmd else {}),
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "edgebridge"}],
        }
        path = out / f"{short}.tar"
        with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
            config_bytes = _json(config)
            config_digest = _blob(tar, config_bytes)
            layer_digest = _blob(tar, gz)
            manifest = _json(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": config_digest,
                        "size": len(config_bytes),
                    },
                    "layers": [
                        {
                            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": layer_digest,
                            "size": len(gz),
                        }
                    ],
                }
            )
            manifest_digest = _blob(tar, manifest)
            index = _json(
                {
                    "schemaVersion": 2,
                    "manifests": [
                        {
                            "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": manifest_digest,
                            "size": len(manifest),
                            "platform": {"architecture": "amd64", "os": "linux"},
                            "annotations": {
                                "io.containerd.image.name": ref,
                                "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
                            },
                        }
                        for ref in refs[:1]  # ctr imports one name; build-images.sh tags the rest
                    ],
                }
            )
            for name, data in (
                ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                ("index.json", index),
            ):
                ti = _info(name, tarfile.REGTYPE, 0o644)
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
        print(f"{' '.join(refs)} {path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: build_images.py OUT_DIR")
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    build(target)
