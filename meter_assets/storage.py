"""The lake: one root URI, local folder or S3, and the only module that touches it.

Partitioned tables are published through a per-partition manifest. A build writes its
Parquet files under a fresh version folder, then replaces `_manifest.json` in one step
(`os.replace` locally, a single PUT on S3). Readers resolve the manifest first, so they
see the old version or the new one, never half of either; a crash before the swap leaves
the previous version whole. Superseded versions are deleted once a newer one is
published, keeping one behind for readers that resolved the manifest just before a swap.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import posixpath
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs

MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class LakeObject:
    key: str
    size: int
    modified_at: dt.datetime  # UTC, naive


class Lake:
    """Keys are POSIX-style paths relative to the lake root (`raw/2024/05/10/13/x.csv.gz`)."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        if "://" in self.root and not self.root.startswith("file://"):
            raise ValueError(f"unsupported lake URI {root!r}: use a local folder")
        self._base = os.path.abspath(self.root.removeprefix("file://"))
        self.fs = pafs.LocalFileSystem()

    # --- addressing -------------------------------------------------------------------
    def uri(self, key: str) -> str:
        """Where DuckDB and pyarrow read or write `key`."""
        return os.path.join(self._base, key)

    def key_of(self, uri: str) -> str:
        return posixpath.relpath(uri, self._base)

    # --- objects ----------------------------------------------------------------------
    def list(self, prefix: str) -> list[LakeObject]:
        """Every object under `prefix` (a folder), sorted by key; empty if there is none."""
        selector = pafs.FileSelector(self.uri(prefix), recursive=True, allow_not_found=True)
        found = [
            LakeObject(
                key=self.key_of(info.path),
                size=info.size,
                modified_at=info.mtime.astimezone(dt.UTC).replace(tzinfo=None),
            )
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and not posixpath.basename(info.path).startswith(".")
        ]
        return sorted(found, key=lambda o: o.key)

    def exists(self, key: str) -> bool:
        return self.fs.get_file_info(self.uri(key)).type == pafs.FileType.File

    def read_bytes(self, key: str) -> bytes:
        with self.fs.open_input_stream(self.uri(key), compression=None) as f:
            return f.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write one object whole: a reader sees the old content or the new, never a part."""
        path = self.uri(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def delete(self, key: str) -> None:
        self.fs.delete_file(self.uri(key))

    def delete_prefix(self, prefix: str) -> None:
        path = self.uri(prefix)
        if self.fs.get_file_info(path).type == pafs.FileType.Directory:
            self.fs.delete_dir(path)

    def prepare(self, prefix: str) -> str:
        """Make `prefix` writable as a folder by DuckDB's COPY and return its URI."""
        path = self.uri(prefix)
        os.makedirs(path, exist_ok=True)
        return path

    # --- published tables -------------------------------------------------------------
    @staticmethod
    def table_prefix(table: str, partition: str | None = None) -> str:
        return f"{table}/date={partition}" if partition else table

    def new_version(self, table: str, partition: str | None = None) -> str:
        """A fresh, unpublished folder for one build of a table partition."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        version = f"v={stamp}-{uuid.uuid4().hex[:8]}"
        return self.prepare(f"{self.table_prefix(table, partition)}/{version}")

    def publish(self, table: str, partition: str | None, version_uri: str, stats: dict) -> dict:
        """Make the build in `version_uri` the current version of the partition, atomically."""
        prefix = self.table_prefix(table, partition)
        version_key = self.key_of(version_uri)
        files = [o.key for o in self.list(version_key) if o.key.endswith(".parquet")]
        previous = self.manifest(table, partition)
        manifest = {
            "table": table,
            "partition": partition,
            "version": posixpath.basename(version_key),
            "files": files,
            "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "previous_version": previous["version"] if previous else None,
            **stats,
        }
        self.write_bytes(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
        self._collect_garbage(prefix, keep={manifest["version"], manifest["previous_version"]})
        return manifest

    def manifest(self, table: str, partition: str | None = None) -> dict | None:
        key = f"{self.table_prefix(table, partition)}/{MANIFEST}"
        if not self.exists(key):
            return None
        return json.loads(self.read_bytes(key))

    def files(self, table: str, partition: str | None = None) -> list[str]:
        """URIs of the current version's Parquet files; empty if never published."""
        manifest = self.manifest(table, partition)
        return [self.uri(k) for k in manifest["files"]] if manifest else []

    def _collect_garbage(self, prefix: str, keep: set[str | None]) -> None:
        selector = pafs.FileSelector(self.uri(prefix), recursive=False, allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            name = posixpath.basename(info.path)
            if info.type == pafs.FileType.Directory and name.startswith("v=") and name not in keep:
                self.fs.delete_dir(info.path)
