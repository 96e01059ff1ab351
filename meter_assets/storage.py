"""The lake: one root URI, a local folder or `s3://bucket/prefix`, and the only module that
touches it. Every asset, the simulator and the tests go through `Lake`; the two backends
differ only in how they list, read, write and delete an object.

Partitioned tables are published through a per-partition manifest. A build writes its
Parquet files under a fresh version folder, then replaces `_manifest.json` in one step
(`os.replace` locally, a single PUT on S3). Readers resolve the manifest first, so they
see the old version or the new one, never half of either; a crash before the swap leaves
the previous version whole. Superseded versions are deleted once a newer one is
published, keeping one behind for readers that resolved the manifest just before a swap.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import posixpath
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class LakeObject:
    key: str
    size: int
    modified_at: dt.datetime  # UTC, naive
    etag: str  # changes whenever the content is replaced


class LocalBackend:
    def __init__(self, root: str):
        self.base = os.path.abspath(root.removeprefix("file://"))

    def uri(self, key: str) -> str:
        return os.path.join(self.base, key)

    def list(self, prefix: str) -> list[LakeObject]:
        top = self.uri(prefix)
        if not os.path.isdir(top):
            return []
        found = []
        for folder, dirs, names in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                if name.startswith("."):
                    continue
                path = os.path.join(folder, name)
                st = os.stat(path)
                found.append(
                    LakeObject(
                        key=path[len(self.base) + 1 :],
                        size=st.st_size,
                        modified_at=dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).replace(tzinfo=None),
                        etag=f"{st.st_size}-{st.st_mtime_ns}",
                    )
                )
        return found

    def folders(self, prefix: str) -> list[str]:
        top = self.uri(prefix)
        return sorted(d for d in os.listdir(top) if os.path.isdir(os.path.join(top, d))) if os.path.isdir(top) else []

    def exists(self, key: str) -> bool:
        return os.path.isfile(self.uri(key))

    def read(self, key: str) -> bytes:
        with open(self.uri(key), "rb") as f:
            return f.read()

    def write(self, key: str, data: bytes, landed_at: dt.datetime | None = None) -> None:
        path = self.uri(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        if landed_at is not None:
            stamp = landed_at.replace(tzinfo=dt.UTC).timestamp()
            os.utime(tmp, (stamp, stamp))
        os.replace(tmp, path)

    def delete(self, key: str) -> None:
        os.remove(self.uri(key))

    def delete_prefix(self, prefix: str) -> None:
        import shutil

        shutil.rmtree(self.uri(prefix), ignore_errors=True)

    def prepare(self, prefix: str) -> str:
        path = self.uri(prefix)
        os.makedirs(path, exist_ok=True)
        return path

    def configure_duckdb(self, con) -> None:
        return None


class S3Backend:
    def __init__(self, root: str, client=None):
        parsed = urlparse(root)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if client is None:
            from meter_assets.resources import s3_resource

            client = s3_resource().get_client()
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def list(self, prefix: str) -> list[LakeObject]:
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                found.append(
                    LakeObject(
                        key=self._relative(item["Key"]),
                        size=item["Size"],
                        modified_at=item["LastModified"].astimezone(dt.UTC).replace(tzinfo=None),
                        etag=item["ETag"].strip('"'),
                    )
                )
        return found

    def folders(self, prefix: str) -> list[str]:
        names = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix).rstrip("/") + "/", Delimiter="/"):
            names += [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in page.get("CommonPrefixes", [])]
        return sorted(names)

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def write(self, key: str, data: bytes, landed_at: dt.datetime | None = None) -> None:
        # a single PUT is atomic: readers see the old object or the new one; an object's
        # LastModified is always its upload time, so `landed_at` cannot be honoured here
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        keys = [o.key for o in self.list(prefix.rstrip("/") + "/")]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def prepare(self, prefix: str) -> str:
        return self.uri(prefix)

    def configure_duckdb(self, con) -> None:
        """Let DuckDB read and write this bucket with httpfs, loaded from its PyPI package."""
        import duckdb
        import duckdb_extension_httpfs

        extension = os.path.join(
            os.path.dirname(duckdb_extension_httpfs.__file__), "extensions", f"v{duckdb.__version__}",
            "httpfs.duckdb_extension",
        )
        con.execute(f"LOAD '{extension}'")
        import boto3

        # the same credential chain the client was built from: environment, profile, role
        credentials = boto3.Session().get_credentials().get_frozen_credentials()
        endpoint = urlparse(self.client.meta.endpoint_url)
        options = {
            "TYPE": "s3",
            "KEY_ID": credentials.access_key,
            "SECRET": credentials.secret_key,
            "REGION": self.client.meta.region_name or "us-east-1",
            "ENDPOINT": endpoint.netloc,
            "USE_SSL": "true" if endpoint.scheme == "https" else "false",
            "URL_STYLE": "vhost" if endpoint.netloc.endswith("amazonaws.com") else "path",
        }
        if credentials.token:
            options["SESSION_TOKEN"] = credentials.token
        body = ", ".join(f"{k} {v}" if k in ("TYPE", "USE_SSL") else f"{k} '{v}'" for k, v in options.items())
        con.execute(f"CREATE OR REPLACE SECRET lake ({body})")


class Lake:
    """Keys are POSIX-style paths relative to the lake root (`raw/2024/05/10/13/x.csv.gz`)."""

    def __init__(self, root: str, s3_client=None):
        self.root = root.rstrip("/")
        if self.root.startswith("s3://"):
            self.backend = S3Backend(self.root, s3_client)
        elif "://" in self.root and not self.root.startswith("file://"):
            raise ValueError(f"unsupported lake URI {root!r}: use a local folder or s3://bucket/prefix")
        else:
            self.backend = LocalBackend(self.root)

    @property
    def is_s3(self) -> bool:
        return isinstance(self.backend, S3Backend)

    # --- objects ----------------------------------------------------------------------
    def uri(self, key: str) -> str:
        """Where DuckDB reads or writes `key`."""
        return self.backend.uri(key)

    def list(self, prefix: str) -> list[LakeObject]:
        """Every object under `prefix` (a folder), sorted by key; empty if there is none."""
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        return sorted(
            (o for o in self.backend.list(prefix) if not posixpath.basename(o.key).startswith(".")),
            key=lambda o: o.key,
        )

    def list_many(self, prefixes: list[str]) -> list[LakeObject]:
        """`list` over several prefixes; on S3 several at once, as each costs a round trip."""
        if not self.is_s3:
            return [o for prefix in prefixes for o in self.list(prefix)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            return [o for found in pool.map(self.list, prefixes) for o in found]

    def folders(self, prefix: str) -> list[str]:
        """Names of the folders directly under `prefix`."""
        return self.backend.folders(prefix)

    def exists(self, key: str) -> bool:
        return self.backend.exists(key)

    def read_bytes(self, key: str) -> bytes:
        return self.backend.read(key)

    def write_bytes(self, key: str, data: bytes, landed_at: dt.datetime | None = None) -> None:
        """Write one object whole: a reader sees the old content or the new, never a part.

        `landed_at` (UTC, naive) dates the object's arrival, for a simulated delivery; a
        local folder keeps it as the file's modification time, S3 keeps the upload time.
        """
        self.backend.write(key, data, landed_at)

    def delete(self, key: str) -> None:
        self.backend.delete(key)

    def prepare(self, prefix: str) -> str:
        """Make `prefix` writable as a folder by DuckDB's COPY and return its URI."""
        return self.backend.prepare(prefix)

    def configure_duckdb(self, con) -> None:
        """Make a DuckDB connection able to read and write this lake's URIs."""
        self.backend.configure_duckdb(con)

    def write_parquet(self, key: str, table: pa.Table) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        self.write_bytes(key, sink.getvalue())

    def read_parquet(self, keys: list[str]) -> pa.Table:
        return pa.concat_tables([pq.read_table(io.BytesIO(self.read_bytes(k))) for k in keys])

    # --- published tables -------------------------------------------------------------
    @staticmethod
    def table_prefix(table: str, partition: str | None = None) -> str:
        """`<table>/date=YYYY-MM-DD` for a day, `<table>/month=YYYY-MM` for a month."""
        if not partition:
            return table
        return f"{table}/{'month' if len(partition) == len('YYYY-MM') else 'date'}={partition}"

    def new_version(self, table: str, partition: str | None = None) -> str:
        """A fresh, unpublished folder for one build of a table partition; returns its key."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        key = f"{self.table_prefix(table, partition)}/v={stamp}-{uuid.uuid4().hex[:8]}"
        self.prepare(key)
        return key

    def publish(self, table: str, partition: str | None, version_key: str, stats: dict) -> dict:
        """Make the build in `version_key` the current version of the partition, atomically."""
        prefix = self.table_prefix(table, partition)
        version = posixpath.basename(version_key.rstrip("/"))
        files = [o.key for o in self.list(f"{prefix}/{version}") if o.key.endswith(".parquet")]
        previous = self.manifest(table, partition)
        manifest = {
            "table": table,
            "partition": partition,
            "version": version,
            "files": files,
            "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "previous_version": previous["version"] if previous else None,
            **stats,
        }
        self.write_bytes(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
        for folder in self.folders(prefix):
            if folder.startswith("v=") and folder not in (manifest["version"], manifest["previous_version"]):
                self.backend.delete_prefix(f"{prefix}/{folder}")
        return manifest

    def manifest(self, table: str, partition: str | None = None) -> dict | None:
        key = f"{self.table_prefix(table, partition)}/{MANIFEST}"
        if not self.exists(key):
            return None
        return json.loads(self.read_bytes(key))

    def keys(self, table: str, partition: str | None = None) -> list[str]:
        """Keys of the current version's Parquet files; empty if never published."""
        manifest = self.manifest(table, partition)
        return list(manifest["files"]) if manifest else []

    def files(self, table: str, partition: str | None = None) -> list[str]:
        """URIs of the current version's Parquet files; empty if never published."""
        return [self.uri(k) for k in self.keys(table, partition)]

    def required_keys(self, table: str, partition: str | None, produced_by: str) -> list[str]:
        """Keys of the current version, or an error naming the asset to materialize first."""
        keys = self.keys(table, partition)
        if not keys:
            where = f" partition {partition}" if partition else ""
            raise FileNotFoundError(f"{table}{where} is not published: materialize {produced_by} first")
        return keys

    def required_files(self, table: str, partition: str | None, produced_by: str) -> list[str]:
        """URIs of the current version, or an error naming the asset to materialize first."""
        return [self.uri(k) for k in self.required_keys(table, partition, produced_by)]
