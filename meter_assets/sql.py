"""Small helpers for writing DuckDB SQL over lake files."""


def sql_list(values: list[str]) -> str:
    """A DuckDB list literal of strings."""
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def parquet(files: list[str] | str) -> str:
    """A `read_parquet` over published files.

    Hive partitioning is off: a Delta table's `date=`/`month=` folders hold its partition
    values, which the files do not carry as columns.
    """
    files = [files] if isinstance(files, str) else files
    return f"read_parquet({sql_list(files)}, hive_partitioning = false)"
