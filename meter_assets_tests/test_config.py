"""Settings: what docs/configuration.md documents is what the code does, bad values are refused by name."""

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from meter_assets.config import Settings

DOCUMENTED = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
# | `METER_X` | `default` ... | what it does |
ROW = re.compile(r"^\| `((?:METER|AWS)_[A-Z0-9_]+)`(?:, `[A-Z0-9_]+`)* \| ([^|]*) \|", re.MULTILINE)


def _variable(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    if alias is None:
        return f"METER_{name.upper()}"
    return alias if isinstance(alias, str) else alias.choices[0]


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("METER_", "AWS_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_every_setting_is_documented_in_readme():
    documented = {m.group(1) for m in ROW.finditer(DOCUMENTED.read_text())}
    missing = [_variable(name) for name in Settings.model_fields if _variable(name) not in documented]
    assert not missing, f"settings docs/configuration.md does not list: {missing}"


def test_the_documented_defaults_are_the_defaults(clean_env):
    defaults = Settings()
    checked = 0
    for variable, default in ((m.group(1), m.group(2)) for m in ROW.finditer(DOCUMENTED.read_text())):
        literal = re.match(r"`([^`]*)`", default.strip())
        if not literal or not variable.startswith("METER_"):
            continue  # "unset", "none", "half the cores": described, not a value
        clean_env.setenv(variable, literal.group(1).replace("./data", defaults.data_dir))
        assert Settings() == defaults, f"{variable}={literal.group(1)} (the documented default) is not the default"
        clean_env.delenv(variable)
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    "variable, value, setting",
    [
        ("METER_SETTLEMENT_MINUTES", "45", "settlement_minutes"),
        ("METER_BILLING_GRACE_DAYS", "28", "billing_grace_days"),
        ("METER_MARKET_TZ", "Mars/Olympus_Mons", "market_tz"),
        ("METER_TAX_RATE", "five percent", "tax_rate"),
        ("METER_QUARANTINE_MAX_RATE", "1.5", "quarantine_max_rate"),
        ("METER_DUCKDB_THREADS", "0", "duckdb_threads"),
        ("METER_START_DATE", "2024-02-30", "start_date"),
        ("METER_GATE_CLOSURE", "25:00", "gate_closure"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(clean_env, variable, value, setting):
    clean_env.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert [e["loc"] for e in refused.value.errors()] == [(setting,)]


def test_empty_is_unset_lists_split_on_spaces_and_the_aws_region_has_two_names(clean_env):
    clean_env.setenv("METER_DATA_DIR", "/srv/meters")
    clean_env.setenv("METER_LAKE", "  ")
    clean_env.setenv("METER_API_PREVIOUS_SECRETS", " old-key-1  old-key-2 ")
    clean_env.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    found = Settings()
    assert found.lake == "/srv/meters/lake"
    assert found.api_previous_secrets == ("old-key-1", "old-key-2")
    assert found.aws_region == "eu-west-2"
    clean_env.setenv("AWS_REGION", "eu-west-1")
    assert Settings().aws_region == "eu-west-1"
