"""One SQL style (meter_assets/sql.py): values bound by name, relations through named fields."""

import ast
import pathlib
import re

import meter_assets

EXECUTING = {"execute", "executemany", "sql", "query", "copy"}
POSITIONAL = re.compile(r"(?<![%\w])%s\b|\?(?=[,)\s])")
# PostgreSQL's own format('... %s %I ...') inside a statement is not a placeholder
PG_FORMAT = re.compile(r"format\('[^']*'")


def _problems(source: str, where: str) -> list[str]:
    """SQL built by an f-string, or values placed by position (`%s`, `?`) instead of by name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        statements = []
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in EXECUTING:
            statements = node.args[:1]
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id.endswith("_SQL") for t in node.targets
        ):
            statements = [node.value]
        for statement in statements:
            for part in ast.walk(statement):
                if isinstance(part, ast.JoinedStr):
                    found.append(f"{where}:{part.lineno}: an f-string builds SQL")
                elif (
                    isinstance(part, ast.Constant)
                    and isinstance(part.value, str)
                    and POSITIONAL.search(PG_FORMAT.sub("", part.value))
                ):
                    found.append(f"{where}:{part.lineno}: a value placed by position")
    return found


def test_no_sql_is_built_by_an_f_string_and_every_value_is_bound_by_name():
    package = pathlib.Path(meter_assets.__file__).parent
    modules = sorted(package.rglob("*.py"))
    assert len(modules) > 40
    problems = [p for path in modules for p in _problems(path.read_text(), str(path.relative_to(package)))]
    assert problems == []


def test_the_style_check_sees_each_thing_it_forbids():
    # positive controls: the forms the package used to have
    assert len(_problems('con.execute(f"SELECT count(*) FROM {parquet(files)}")', "a")) == 1
    assert len(_problems('TOTALS_SQL = f"SELECT {columns} FROM t"', "b")) == 1
    assert len(_problems('conn.execute("SELECT 1 FROM t WHERE day = %s", [day])', "c")) == 1
    assert len(_problems('con.executemany("INSERT INTO t VALUES (?)", rows)', "d")) == 1
    # and the forms it allows
    assert _problems('con.execute(TOTALS_SQL.format(files=parquet(files)), {"day": day})', "e") == []
    assert _problems('conn.execute("SELECT 1 FROM t WHERE day = %(day)s", {"day": day})', "f") == []
    assert _problems("con.execute(\"SELECT strftime(read_at, '%H:%M') FROM t\")", "g") == []
    assert _problems("ADOPT_SQL = \"SELECT format('ALTER %s %I OWNER TO o', kind, name)\"", "h") == []
