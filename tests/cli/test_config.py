"""signoff.toml / [tool.signoff]: strict validation with one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import find_config, load_settings
from runner.errors import ConfigError
from runner.plan.model import Category, Decision, Severity


def test_defaults_fail_closed(tmp_path: Path) -> None:
    settings = load_settings(None, search_from=tmp_path)
    policy = settings.policy
    assert policy.decisions[Category.DESTRUCTIVE] is Decision.NEEDS_APPROVAL
    assert policy.decisions[Category.UNANALYSABLE] is Decision.NEEDS_APPROVAL
    assert policy.decisions[Category.LOCKING] is Decision.WARN
    assert policy.server_version is None
    assert settings.lock_timeout_ms == 5000


def test_signoff_toml_is_found_above_the_start(tmp_path: Path) -> None:
    (tmp_path / "signoff.toml").write_text(
        'target = "ehr"\npostgres_version = "14.2"\nfail_on = "warning"\nlock_timeout = "off"\n'
        '[decisions]\nlocking = "needs-approval"\n[rules]\nSO002 = "deny"\n'
    )
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_config(nested) == tmp_path / "signoff.toml"
    settings = load_settings(None, search_from=nested)
    assert settings.policy.target == "ehr"
    assert settings.policy.server_version == 140002
    assert settings.policy.fail_on is Severity.WARNING
    assert settings.lock_timeout_ms is None and settings.policy.apply_lock_timeout is False
    assert settings.policy.decisions[Category.LOCKING] is Decision.NEEDS_APPROVAL
    assert settings.policy.rule_decisions == {"SO002": Decision.DENY}


def test_pyproject_tool_section(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.signoff]\ntarget = "from-pyproject"\n')
    assert load_settings(None, search_from=tmp_path).policy.target == "from-pyproject"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('targte = "x"\n', "unknown key 'targte'"),
        ('[decisions]\ndestructiv = "warn"\n', "decisions.destructiv is not a category"),
        ('[decisions]\ndestructive = "maybe"\n', "'maybe' is not a decision"),
        ('[decisions]\nhygiene = "deny"\n', "hygiene findings are advisory only"),
        ('[rules]\nSO999 = "warn"\n', "rules.SO999 is not a rule id"),
        ('postgres_version = "fifteen"\n', "is not a PostgreSQL version"),
        ('lock_timeout = "5 parsecs"\n', "is not a duration"),
        ('fail_on = "loud"\n', "'loud' is not one of"),
        ("target = \n", "invalid TOML"),
        ('inline_allow = ["destructiv"]\n', "inline_allow holds an unknown category"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "signoff.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    text = str(raised.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
