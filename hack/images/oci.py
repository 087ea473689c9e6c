#!/usr/bin/env python3
"""Writes a single-layer OCI image archive (an OCI image layout packed in a tar).

Usage:
  oci.py --name rovn.local/pause:1 --arch amd64 --out pause.tar \
         [--entrypoint ARG]... [--cmd ARG]... [--env KEY=value]... [--workdir DIR] \
         [--file /path/in/image=/host/file[:MODE]]... [--dir /path[:MODE]]... \
         [--symlink /path/in/image=TARGET]...

MODE is octal (files default to 0644, directories to 0755). The annotations of
the manifest in index.json are io.containerd.image.name = the name and
org.opencontainers.image.ref.name = its tag.

The archive is deterministic: entries sorted by path, owner root, fixed mtime
(SOURCE_DATE_EPOCH, default 0), one uncompressed layer (so its digest is its
diff id), JSON with sorted keys. Missing parent directories get mode 0755. Only
the Python standard library is used. Prints "<name> <manifest digest>".
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile

MTIME = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


def fail(message):
    sys.stderr.write(f"oci.py: {message}\n")
    sys.exit(1)


def tar_info(path, kind, mode):
    info = tarfile.TarInfo(path)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def layer_bytes(entries):
    """The layer tar: every entry plus its missing parent directories, sorted."""
    items = {}
    for entry in entries:
        path = entry["path"].strip("/")
        if not path or ".." in path.split("/"):
            fail(f"bad path {entry['path']!r}")
        if path in items:
            fail(f"{entry['path']} given twice")
        items[path] = entry
        parent = os.path.dirname(path)
        while parent:
            items.setdefault(parent, {"type": "dir", "path": parent, "mode": 0o755})
            parent = os.path.dirname(parent)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(items):
            entry = items[path]
            kind = entry["type"]
            if kind == "dir":
                tar.addfile(tar_info(path, tarfile.DIRTYPE, entry.get("mode", 0o755)))
            elif kind == "symlink":
                info = tar_info(path, tarfile.SYMTYPE, 0o777)
                info.linkname = entry["target"]
                tar.addfile(info)
            elif kind == "file":
                with open(entry["src"], "rb") as f:
                    data = f.read()
                info = tar_info(path, tarfile.REGTYPE, entry.get("mode", 0o644))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                fail(f"unknown entry type {kind!r} for {path}")
    return buf.getvalue()


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def split_mode(value, default):
    """Splits "path:0755" into ("path", 0o755); without an octal suffix: (value, default)."""
    head, sep, tail = value.rpartition(":")
    if sep and tail and all(c in "01234567" for c in tail):
        return head, int(tail, 8)
    return value, default


def parse_args():
    parser = argparse.ArgumentParser(description="Write a single-layer OCI image archive.")
    parser.add_argument("--name", required=True)
    parser.add_argument("--arch", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--entrypoint", action="append", default=[])
    parser.add_argument("--cmd", action="append", default=[])
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--workdir", default="/")
    parser.add_argument("--file", action="append", default=[])
    parser.add_argument("--dir", action="append", default=[])
    parser.add_argument("--symlink", action="append", default=[])
    args = parser.parse_args()
    entries = []
    for value in args.file:
        dst, sep, src = value.partition("=")
        if not sep:
            fail(f"--file {value!r}: expected /path/in/image=/host/file[:MODE]")
        src, mode = split_mode(src, 0o644)
        entries.append({"type": "file", "path": dst, "src": src, "mode": mode})
    for value in args.dir:
        dst, mode = split_mode(value, 0o755)
        entries.append({"type": "dir", "path": dst, "mode": mode})
    for value in args.symlink:
        dst, sep, target = value.partition("=")
        if not sep:
            fail(f"--symlink {value!r}: expected /path/in/image=TARGET")
        entries.append({"type": "symlink", "path": dst, "target": target})
    return args, entries


def main():
    args, entries = parse_args()
    name = args.name
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        fail(f"image name {name!r} has no tag")
    tag = last.rsplit(":", 1)[1]
    arch = args.arch

    layer = layer_bytes(entries)
    layer_digest = digest(layer)
    config_section = {"Env": args.env, "WorkingDir": args.workdir}
    if args.entrypoint:
        config_section["Entrypoint"] = args.entrypoint
    if args.cmd:
        config_section["Cmd"] = args.cmd
    config = canonical_json(
        {
            "architecture": arch,
            "os": "linux",
            "config": config_section,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created_by": "rovn hack/images.sh", "comment": name}],
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": digest(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer_digest, "size": len(layer)}],
        }
    )
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
    )

    out = args.out
    tmp = out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(path, data, kind=tarfile.REGTYPE, mode=0o644):
            info = tar_info(path, kind, mode)
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)

        add("blobs", b"", tarfile.DIRTYPE, 0o755)
        add("blobs/sha256", b"", tarfile.DIRTYPE, 0o755)
        for blob in sorted([layer, config, manifest], key=digest):
            add("blobs/sha256/" + digest(blob).split(":", 1)[1], blob)
        add("index.json", index)
        add("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    os.replace(tmp, out)
    print(f"{name} {digest(manifest)}")


if __name__ == "__main__":
    main()
