"""The lake: one root URI, a local folder or `s3://bucket/prefix`, and the only module that
touches it. Every asset, the simulator and the tests go through `Lake`; the two backends
differ only in how they list, read, write and delete an object.

Tables are Delta Lake tables (`meter_assets.tables` names them). A build writes Parquet
files into its partition's folder under names no reader looks at (a Delta reader sees only
the files its log names), the step checks them, and `publish` commits them in one Delta
transaction that also removes the partition's previous files: readers see the old version
or the new, a crash before the commit leaves the old one whole, and `vacuum` deletes
unreferenced files after the retention. Any engine with a Delta reader sees exactly the
published rows; every version stays readable (time travel) until it is vacuumed.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import posixpath
import random
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Schema, Transaction
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, create_table_with_add_actions

from meter_assets.config import settings
from meter_assets.sql import literal
from meter_assets.tables import ALL, LakeTable

# a commit that lost a race to another writer reloads the table and tries again
COMMIT_ATTEMPTS = 20
# a checkpoint every 10 commits: a reader replays at most 9 commit files after it (a daily
# table gets a commit per rebuilt day; at delta-rs's default of 100 a load on S3 slows down)
TABLE_CONFIGURATION = {"delta.checkpointInterval": "10"}
# a build's files are named after it: its start (UTC, to the microsecond) and a random tag
BUILD_FILE = re.compile(r"^(\d{8}T\d{12}-[0-9a-f]{8})-")
# Builds published together (a day's readings and their quarantine) are committed one table
# after the other; a record of them lies here until the last commit has landed, so that one
# killed in between is finished by whoever finds the record first.
PUBLISHING = "_publishing"
# A record this old belongs to a step that died: a live one commits its tables in seconds.
PUBLISHING_GRACE_S = 300


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
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue  # deleted since the folder was read (a discarded build)
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

    def storage_options(self) -> dict[str, str] | None:
        return None

    def footer(self, key: str) -> pq.FileMetaData:
        return pq.read_metadata(self.uri(key))


def s3_client():
    """An S3 client configured by the standard AWS variables (`AWS_ENDPOINT_URL`, ...) and credential
    chain, retrying as Dagster's S3 resource does (5 attempts, standard mode)."""
    import boto3
    from botocore.config import Config

    s = settings()
    config = Config(retries={"max_attempts": 5, "mode": "standard"})
    return boto3.session.Session().client(
        "s3", endpoint_url=s.aws_endpoint_url, region_name=s.aws_region, config=config
    )


class S3Backend:
    def __init__(self, root: str, client=None):
        parsed = urlparse(root)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = client if client is not None else s3_client()

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

    def _credentials(self) -> dict[str, str]:
        import boto3

        # the same credential chain the client was built from: environment, profile, role
        credentials = boto3.Session().get_credentials().get_frozen_credentials()
        endpoint = urlparse(self.client.meta.endpoint_url)
        return {
            "key_id": credentials.access_key,
            "secret": credentials.secret_key,
            "token": credentials.token or "",
            "region": self.client.meta.region_name or "us-east-1",
            "endpoint": endpoint.netloc,
            "endpoint_url": self.client.meta.endpoint_url,
            "https": endpoint.scheme == "https",
            "aws": endpoint.netloc.endswith("amazonaws.com"),
        }

    def configure_duckdb(self, con) -> None:
        """Let DuckDB read and write this bucket with httpfs, loaded from its PyPI package."""
        import duckdb_extension_httpfs

        load_extension(con, duckdb_extension_httpfs, "httpfs")
        c = self._credentials()
        options = {
            "TYPE": "s3",
            "KEY_ID": c["key_id"],
            "SECRET": c["secret"],
            "REGION": c["region"],
            "ENDPOINT": c["endpoint"],
            "USE_SSL": "true" if c["https"] else "false",
            "URL_STYLE": "vhost" if c["aws"] else "path",
        }
        if c["token"]:
            options["SESSION_TOKEN"] = c["token"]
        # DuckDB binds no parameters in CREATE SECRET: the values are quoted as literals
        body = ", ".join("{} {}".format(k, v if k in ("TYPE", "USE_SSL") else literal(v)) for k, v in options.items())
        con.execute("CREATE OR REPLACE SECRET lake ({body})".format(body=body))

    def storage_options(self) -> dict[str, str]:
        """For `deltalake`: the same credentials and endpoint. Commits are made safe against
        concurrent writers by S3's conditional PUT (`If-None-Match`): a commit file that
        another writer created first is refused, and the loser retries on the new version."""
        c = self._credentials()
        options = {
            "AWS_ACCESS_KEY_ID": c["key_id"],
            "AWS_SECRET_ACCESS_KEY": c["secret"],
            "AWS_REGION": c["region"],
            "AWS_ENDPOINT_URL": c["endpoint_url"],
            "AWS_ALLOW_HTTP": "false" if c["https"] else "true",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "true" if c["aws"] else "false",
            "conditional_put": "etag",
        }
        if c["token"]:
            options["AWS_SESSION_TOKEN"] = c["token"]
        return options

    def footer(self, key: str) -> pq.FileMetaData:
        size = self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
        return pq.read_metadata(_RangedObject(self, key, size))


class _RangedObject(io.RawIOBase):
    """An S3 object read by ranged GETs, so a Parquet footer costs two requests, not the file."""

    def __init__(self, backend: S3Backend, key: str, size: int):
        self.backend, self.key, self.size, self.position = backend, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = base + offset
        return self.position

    def readinto(self, buffer) -> int:
        end = min(self.size, self.position + len(buffer))
        if end <= self.position:
            return 0
        data = self.backend.client.get_object(
            Bucket=self.backend.bucket, Key=self.backend._key(self.key), Range=f"bytes={self.position}-{end - 1}"
        )["Body"].read()
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def load_extension(con, package, name: str) -> None:
    """LOAD a DuckDB extension shipped in a PyPI package (nothing is downloaded at run time)."""
    import duckdb

    path = os.path.join(
        os.path.dirname(package.__file__), "extensions", f"v{duckdb.__version__}", f"{name}.duckdb_extension"
    )
    con.execute("LOAD {path}".format(path=literal(path)))


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

    # --- Delta tables -------------------------------------------------------------------
    def table_uri(self, table: LakeTable) -> str:
        return self.uri(table.path)

    def storage_options(self) -> dict[str, str] | None:
        """What `deltalake` needs to reach this lake (None for a local folder)."""
        return self.backend.storage_options()

    def delta(self, table: LakeTable, version: int | None = None) -> DeltaTable | None:
        """The table's Delta log at `version` (the newest by default); None if never published."""
        try:
            return DeltaTable(self.table_uri(table), version=version, storage_options=self.storage_options())
        except TableNotFoundError:
            return None

    def snapshot(self, table: LakeTable, version: int | None = None) -> Snapshot | None:
        """One version of a table, to read several partitions as of the same commit."""
        delta = self.delta(table, version)
        return Snapshot(self, table, delta) if delta is not None else None

    def required_snapshot(self, table: LakeTable, partition: str | None = None) -> Snapshot:
        """The newest version, or an error naming the asset to materialize first."""
        return self.snapshot(table) or Snapshot.missing(table, partition)

    def files(self, table: LakeTable, partition: str | None = None) -> list[str]:
        """URIs of the published files of a partition (or of an unpartitioned table); empty if none."""
        snapshot = self.snapshot(table)
        return snapshot.files(partition) if snapshot else []

    def keys(self, table: LakeTable, partition: str | None = None) -> list[str]:
        snapshot = self.snapshot(table)
        return snapshot.keys(partition) if snapshot else []

    def required_files(self, table: LakeTable, partition: str | None = None) -> list[str]:
        """URIs of the published partition, or an error naming the asset to materialize first."""
        snapshot = self.snapshot(table)
        return snapshot.required_files(partition) if snapshot else Snapshot.missing(table, partition)

    def required_keys(self, table: LakeTable, partition: str | None = None) -> list[str]:
        snapshot = self.snapshot(table)
        return snapshot.required_keys(partition) if snapshot else Snapshot.missing(table, partition)

    def build(self, table: LakeTable, partition: str | None = None, same_as: Build | None = None) -> Build:
        """A new, unpublished build of one partition (or of the whole table, if unpartitioned).

        Builds a step makes together (`same_as`) share one id, so that when two steps race,
        each table keeps the same step's build: the one that started last.
        """
        started = dt.datetime.now(dt.UTC)
        build_id = same_as.id if same_as else f"{started:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        build = Build(self, table, partition, build_id)
        self.prepare(table.folder(partition))
        return build

    def publish(self, build: Build, metadata: dict | None = None) -> Publication:
        """Commit a build's files as the partition's new content, in one Delta transaction.

        Concurrent builds of one partition: the one that started last wins, whichever commits
        first (its inputs are at least as new); the other is discarded. Builds of different
        partitions never undo each other: a commit that loses a race reloads and retries.
        """
        table, partition = build.table, build.partition
        staged = build.objects()
        if not staged:
            raise ValueError(f"build {build.id} of {table.folder(partition)} wrote no files")
        schema, adds, rows = self._adds(table, {partition: staged})
        # delta-rs would retry a lost commit itself, on top of the winner's version: an overwrite of
        # a partition that was empty when read then lands beside the winner's files (a mixed
        # partition). So no retries there, and a transaction id per partition that makes any two
        # concurrent commits to it conflict; the loop below reloads and decides again.
        properties = CommitProperties(
            custom_metadata={
                "build": build.id,
                "partition": partition or "",
                "rows": str(rows),
                **{k: str(v) for k, v in (metadata or {}).items()},
            },
            max_commit_retries=0,
            app_transactions=[Transaction(app_id=table.folder(partition), version=build.started_us)],
        )
        where = [(table.partition, "=", partition)] if table.partition else None
        for attempt in range(COMMIT_ATTEMPTS):
            current = self.delta(table)
            if current is not None:
                newer = sorted(b for b in _builds(current, table, partition) if b > build.id)
                if newer:
                    self.discard(build)
                    return Publication(table, partition, current.version(), build.id, rows, superseded_by=newer[-1])
            try:
                if current is None:
                    create_table_with_add_actions(
                        self.table_uri(table),
                        Schema.from_arrow(schema),
                        adds,
                        mode="error",
                        partition_by=[table.partition] if table.partition else None,
                        name=table.path.replace("/", "_"),
                        configuration=TABLE_CONFIGURATION,
                        storage_options=self.storage_options(),
                        commit_properties=properties,
                    )
                else:
                    try:
                        evolved = _evolved(current, table, schema)
                    except TypeError:
                        self.discard(build)
                        raise
                    current.create_write_transaction(
                        adds,
                        "overwrite",
                        evolved,
                        partition_by=[table.partition] if table.partition else None,
                        partition_filters=where,
                        commit_properties=properties,
                    )
                return Publication(table, partition, self._version_of(table, build.id), build.id, rows)
            except CommitFailedError:
                pass  # another writer committed first: look again
            except DeltaError:
                if current is not None or self.delta(table) is None:
                    raise
                # another writer created the table first: look again
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
        raise RuntimeError(f"{table.folder(partition)}: build {build.id} not committed in {COMMIT_ATTEMPTS} attempts")

    def publish_together(self, builds: list[Build]) -> list[Publication]:
        """Publish builds of several tables (in order) as one: if the process dies between two
        commits, `finish_publishing` commits the rest later (they are never rolled back, so a
        reader never finds one table's new version without the others' for longer than that)."""
        if len(builds) < 2:
            return [self.publish(build) for build in builds]
        record = f"{PUBLISHING}/{builds[0].id}-{uuid.uuid4().hex[:8]}.json"
        self.write_bytes(
            record,
            json.dumps([{"table": b.table.path, "partition": b.partition, "build": b.id} for b in builds]).encode(),
        )
        publications = [self.publish(build) for build in builds]
        self.delete(record)
        return publications

    def finish_publishing(self, older_than_s: float | None = None) -> list[Publication]:
        """Commit what a dead step left half published: each build of a record older than
        `older_than_s` that is not yet in its table (a build since superseded by a newer one
        stays unpublished, as it would have); the record is then deleted."""
        finished = []
        older_than_s = PUBLISHING_GRACE_S if older_than_s is None else older_than_s
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        by_path = {table.path: table for table in ALL}
        for found in self.list(PUBLISHING):
            if (now - found.modified_at).total_seconds() < older_than_s:
                continue
            for entry in json.loads(self.read_bytes(found.key)):
                build = Build(self, by_path[entry["table"]], entry["partition"], entry["build"])
                current = self.delta(build.table)
                published = _builds(current, build.table, build.partition) if current is not None else set()
                # already in, or replaced since by a newer build (whose step finished the job)
                if any(b >= build.id for b in published):
                    continue
                if build.objects():
                    finished.append(self.publish(build, {"finished_after": "a step that died mid-publication"}))
            self.delete(found.key)
        return finished

    def _adds(self, table: LakeTable, files: dict[str | None, list[LakeObject]]) -> tuple[pa.Schema, list, int]:
        """The table's schema (from the first file's footer), one add action per file, and the rows."""
        footers = {o.key: self.backend.footer(o.key) for found in files.values() for o in found}
        schema = next(iter(footers.values())).schema.to_arrow_schema()
        if table.partition:
            schema = schema.append(pa.field(table.partition, pa.date32() if table.partition == "date" else pa.string()))
        adds = [
            AddAction(
                path=o.key[len(table.path) + 1 :],
                size=o.size,
                partition_values={table.partition: partition} if table.partition else {},
                modification_time=int(o.modified_at.replace(tzinfo=dt.UTC).timestamp() * 1000),
                data_change=True,
                stats=json.dumps({"numRecords": footers[o.key].num_rows}),
            )
            for partition, found in files.items()
            for o in found
        ]
        return schema, adds, sum(f.num_rows for f in footers.values())

    def adopt(self, table: LakeTable, files: dict[str | None, list[str]], metadata: dict | None = None) -> int:
        """Make existing Parquet files under the table's folder a new Delta table, in one commit
        (for a lake written before it was Delta); returns the rows adopted."""
        listed = {o.key: o for o in self.list(table.path)}
        missing = [k for keys in files.values() for k in keys if k not in listed]
        if missing:
            raise FileNotFoundError(f"{table.path}: {len(missing)} files to adopt are missing, e.g. {missing[0]}")
        schema, adds, rows = self._adds(table, {p: [listed[k] for k in keys] for p, keys in files.items()})
        create_table_with_add_actions(
            self.table_uri(table),
            Schema.from_arrow(schema),
            adds,
            mode="error",
            partition_by=[table.partition] if table.partition else None,
            name=table.path.replace("/", "_"),
            configuration=TABLE_CONFIGURATION,
            storage_options=self.storage_options(),
            commit_properties=CommitProperties(custom_metadata={k: str(v) for k, v in (metadata or {}).items()}),
        )
        return rows

    def discard(self, build: Build) -> None:
        """Delete an unpublished build's files (vacuum would, after the retention)."""
        for o in build.objects():
            self.delete(o.key)

    def _version_of(self, table: LakeTable, build_id: str) -> int:
        """The table version that committed `build_id` (later commits may already exist): read
        from the commits' own `commitInfo`, newest first (delta-rs's `history()` can number a
        commit wrongly while others are landing)."""
        latest = self.delta(table).version()
        for version in range(latest, max(-1, latest - 100), -1):
            for line in self.read_bytes(f"{table.path}/_delta_log/{version:020d}.json").splitlines():
                entry = json.loads(line)
                if "commitInfo" in entry:
                    if entry["commitInfo"].get("build") == build_id:
                        return version
                    break
        raise LookupError(f"{table.path}: build {build_id} is not in the last 100 commits")

    def vacuum(self, table: LakeTable, retention_hours: int) -> list[str]:
        """Delete files no version younger than the retention reads, and unpublished builds' files."""
        delta = self.delta(table)
        if delta is None:
            return []
        return delta.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False, full=True)


def _evolved(current: DeltaTable, table: LakeTable, schema: pa.Schema) -> Schema:
    """The table's schema with the build's new columns added: a build may add a column (older
    partitions read it as NULL) or lack one (its rows read NULL), never change a column's type,
    which would make the older partitions unreadable (delta-rs would replace the schema)."""
    fields = {f.name: f for f in current.schema().fields}
    changed = [
        f"{f.name}: {fields[f.name].type} -> {f.type}"
        for f in Schema.from_arrow(schema).fields
        if f.name in fields and str(fields[f.name].type) != str(f.type)
    ]
    if changed:
        raise TypeError(
            f"{table.path}: a build changes column types ({'; '.join(changed)}); the published "
            "partitions would not read with the new schema: rebuild the whole table under a new path"
        )
    added = [f for f in Schema.from_arrow(schema).fields if f.name not in fields]
    return Schema([*current.schema().fields, *added])


def _builds(delta: DeltaTable, table: LakeTable, partition: str | None) -> set[str]:
    """The build ids of a partition's published files (their names start with them)."""
    where = [(table.partition, "=", partition)] if table.partition else None
    names = (posixpath.basename(uri) for uri in delta.file_uris(file_pruning_predicate=where))
    return {match.group(1) for match in map(BUILD_FILE.match, names) if match}


@dataclass(frozen=True)
class Publication:
    table: LakeTable
    partition: str | None
    version: int  # the Delta table version that holds the published partition
    build: str
    rows: int
    superseded_by: str | None = None  # a build that started later and was published instead

    @property
    def published(self) -> bool:
        return self.superseded_by is None

    def metadata(self) -> dict:
        """What a materialization records about the commit, so a run can be traced to a version."""
        found = {"table": self.table.path, "delta_version": self.version, "build": self.build}
        if self.superseded_by:
            found["superseded_by"] = self.superseded_by
        return found


@dataclass(frozen=True)
class Build:
    """Files of one build: named `<build id>-<name>` in the partition's folder, unseen until published."""

    lake: Lake
    table: LakeTable
    partition: str | None
    id: str

    @property
    def started_us(self) -> int:
        """When the build started, in microseconds since 1970 (UTC): its id's leading stamp."""
        started = dt.datetime.strptime(self.id[:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=dt.UTC)
        return int(started.timestamp()) * 1_000_000 + started.microsecond

    def key(self, name: str) -> str:
        return f"{self.table.folder(self.partition)}/{self.id}-{name}"

    def uri(self, name: str) -> str:
        return self.lake.uri(self.key(name))

    def write_parquet(self, name: str, table: pa.Table) -> None:
        self.lake.write_parquet(self.key(name), table)

    def objects(self) -> list[LakeObject]:
        folder = self.table.folder(self.partition)
        return [
            o for o in self.lake.list(folder) if o.key.startswith(f"{folder}/{self.id}-") and o.key.endswith(".parquet")
        ]


@dataclass(frozen=True)
class Snapshot:
    """A table as of one Delta version."""

    lake: Lake
    table: LakeTable
    delta: DeltaTable

    @property
    def version(self) -> int:
        return self.delta.version()

    def files(self, partition: str | None = None) -> list[str]:
        if self.table.partition and not partition:
            raise ValueError(f"{self.table.path} is partitioned by {self.table.partition}: name a partition")
        where = [(self.table.partition, "=", partition)] if self.table.partition else None
        return sorted(self.delta.file_uris(file_pruning_predicate=where))

    def keys(self, partition: str | None = None) -> list[str]:
        base = self.lake.uri("")
        return [uri[len(base) :] if uri.startswith(base) else uri for uri in self.files(partition)]

    def required_files(self, partition: str | None = None) -> list[str]:
        return self.files(partition) or self.missing(self.table, partition)

    def required_keys(self, partition: str | None = None) -> list[str]:
        return self.keys(partition) or self.missing(self.table, partition)

    @staticmethod
    def missing(table: LakeTable, partition: str | None) -> list[str]:
        where = f" partition {partition}" if partition else ""
        raise FileNotFoundError(f"{table.path}{where} is not published: materialize {table.asset} first")
