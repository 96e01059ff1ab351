"""Small helpers for writing DuckDB SQL over lake files.

One style throughout: values (numbers, dates, strings a statement compares with) are bound by
name, `$name` in DuckDB and `%(name)s` in PostgreSQL, never written into the text. Relations
(the files a statement reads or writes, a view's name) and what DuckDB cannot bind (LOAD,
CREATE SECRET, a view's definition) are named `{fields}` of the statement, filled by
`str.format` with the quoting helpers below. No f-string builds SQL (`test_sql_style.py`).
"""

# A temporary view over files, for statements that read a relation by name.
VIEW_SQL = "CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {files}"


def literal(value: str) -> str:
    """A DuckDB string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: list[str]) -> str:
    """A DuckDB list literal of strings."""
    return "[" + ", ".join(literal(v) for v in values) + "]"


def parquet(files: list[str] | str, union_by_name: bool = False) -> str:
    """A `read_parquet` over published files.

    Hive partitioning is off: a Delta table's `date=`/`month=` folders hold its partition
    values, which the files do not carry as columns. `union_by_name`: files written before a
    table gained columns read beside newer ones (the missing columns NULL).
    """
    files = [files] if isinstance(files, str) else files
    options = ", union_by_name = true" if union_by_name else ""
    return "read_parquet({files}, hive_partitioning = false{options})".format(files=sql_list(files), options=options)


def typed_csv(uri: str, columns: dict[str, str], **options: str) -> str:
    """A `read_csv` of a file with a header, its columns and types given (nothing sniffed)."""
    struct = "{" + ", ".join("{}: {}".format(literal(c), literal(t)) for c, t in columns.items()) + "}"
    extra = "".join(", {} = {}".format(k, literal(v)) for k, v in options.items())
    return "read_csv({uri}, header = true, auto_detect = false, columns = {columns}{extra})".format(
        uri=literal(uri), columns=struct, extra=extra
    )
