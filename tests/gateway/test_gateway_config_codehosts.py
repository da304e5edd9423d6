"""gateway.toml: the code hosts the gateway speaks to itself, and who may approve."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from test_gateway_config import GOOD

from runner.errors import ConfigError
from runner.gateway.config import parse_gateway_config

HOSTS = """
[approvals]
github_permission = "maintain"
gitlab_access = "maintainer"
min_approvals = 2

[code_hosts.github]
api_url = "https://ghe.example.com/api/v3/"
token_env = "SIGNOFF_TEST_GH_TOKEN"

[code_hosts.gitlab]
api_url = "https://gitlab.example.com"
token_file = "{token_file}"
"""


def test_code_hosts_and_approvals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "gitlab-token"
    token_file.write_text("glpat-file-token\n")
    config = parse_gateway_config(
        tomllib.loads(GOOD + HOSTS.format(token_file=token_file)), where="gateway.toml"
    )
    github = config.code_hosts["github"]
    assert github.api_url == "https://ghe.example.com/api/v3"  # trailing slash dropped
    monkeypatch.setenv("SIGNOFF_TEST_GH_TOKEN", "ghs-env-token")
    assert github.token() == "ghs-env-token"
    assert config.code_hosts["gitlab"].token() == "glpat-file-token"
    assert config.approvals.github_permission == "maintain"
    assert config.approvals.gitlab_access_level == 40
    assert config.min_approvals("ehr") == 2


def test_defaults_and_per_database_minimum() -> None:
    config = parse_gateway_config(tomllib.loads(GOOD), where="gateway.toml")
    assert config.code_hosts == {}
    assert config.approvals.github_permission == "write"
    assert config.approvals.gitlab_access_level == 30
    assert config.min_approvals("ehr") == 1
    text = GOOD.replace('password_env = "EHR_DB_PASSWORD"', 'password_env = "X"\nmin_approvals = 3')
    assert parse_gateway_config(tomllib.loads(text), where="g").min_approvals("ehr") == 3


def test_a_token_that_is_not_there_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNOFF_TEST_GH_TOKEN", raising=False)
    text = GOOD + '[code_hosts.github]\ntoken_env = "SIGNOFF_TEST_GH_TOKEN"\n'
    config = parse_gateway_config(tomllib.loads(text), where="gateway.toml")
    assert config.code_hosts["github"].api_url == "https://api.github.com"
    with pytest.raises(ConfigError, match="SIGNOFF_TEST_GH_TOKEN is not set"):
        config.code_hosts["github"].token()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[code_hosts.bitbucket]\ntoken_env = "T"\n', "code_hosts.bitbucket is not a code host"),
        ("[code_hosts.github]\n", "set token_env or token_file"),
        ('[code_hosts.github]\ntoken = "ghp_x"\n', "unknown key code_hosts.github.token"),
        (
            '[code_hosts.github]\ntoken_env = "A"\ntoken_file = "/f"\n',
            "token_env and token_file both set",
        ),
        ('[code_hosts.gitlab]\napi_url = "gitlab.com"\ntoken_env = "T"\n', "write an http(s) URL"),
        ('[approvals]\ngithub_permission = "push"\n', "approvals.github_permission = 'push'"),
        ('[approvals]\ngitlab_access = "guest"\n', "approvals.gitlab_access = 'guest'"),
        ("[approvals]\nmin_approvals = 0\n", "approvals.min_approvals = 0"),
        ("[approvals]\nquorum = 2\n", "unknown key approvals.quorum"),
        ('[roles.planner]\nreview_as = "nobody"\n', "review_as = 'nobody' is not a role"),
    ],
)
def test_mistakes_are_one_line(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_gateway_config(tomllib.loads(GOOD + extra), where="gateway.toml")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert "ghp_x" not in str(raised.value)


def test_a_planning_role_names_the_role_its_plans_are_reviewed_as() -> None:
    text = GOOD + '[roles.planner]\ndestructive = "deny"\nreview_as = "deployer"\n'
    config = parse_gateway_config(tomllib.loads(text), where="gateway.toml")
    assert config.roles["planner"].review_as == "deployer"
    assert config.roles["deployer"].review_as is None


def test_a_roles_timeouts_become_its_upstream_settings() -> None:
    text = GOOD.replace(
        "[roles.deployer]\n", '[roles.deployer]\nlock_timeout = "5s"\nstatement_timeout = "2min"\n'
    )
    role = parse_gateway_config(tomllib.loads(text), where="g").roles["deployer"]
    assert role.settings() == (("lock_timeout", "5000"), ("statement_timeout", "120000"))
    with pytest.raises(ConfigError, match=r"roles\.deployer\.lock_timeout"):
        parse_gateway_config(
            tomllib.loads(
                GOOD.replace("[roles.deployer]\n", '[roles.deployer]\nlock_timeout = "soon"\n')
            ),
            where="g",
        )
