"""``[masking]`` in gateway.toml: parsed into the policy, each mistake one line
naming the key and the fix; the detectors and replacements by themselves."""

from __future__ import annotations

from typing import Any

import pytest

from runner.errors import ConfigError
from runner.gateway.config import parse_gateway_config
from runner.gateway.masking.config import DEFAULT_RULES, MaskingConfig
from runner.gateway.masking.detectors import detectors, find, luhn
from runner.gateway.masking.replace import keep_domain, keep_last, pseudonym

BASE: dict[str, Any] = {
    "issuers": [{"name": "ci", "issuer": "https://issuer.example"}],
    "databases": [{"name": "ehr", "user": "gw", "password_env": "X"}],
    "roles": {"migrator": {}, "deployer": {}},
}


def config(masking: Any) -> MaskingConfig:
    return parse_gateway_config({**BASE, "masking": masking}).masking


def test_no_section_masks_nothing() -> None:
    masking = parse_gateway_config(BASE).masking
    assert not masking.enabled and not masking.masks("migrator") and masking.digest() is None


def test_rules_roles_and_digest() -> None:
    masking = config(
        {
            "roles": ["migrator"],
            "unmask_roles": ["deployer"],
            "secret_env": "KEY",
            "rules": [
                {"name": "ssn", "columns": ["*.ssn"], "action": "keep_last", "keep_last": 4},
                {"name": "mrn", "names": ["mrn"], "action": "pseudonym"},
                {"name": "v", "detect": ["email", "ssn"]},
            ],
        }
    )
    assert masking.masks("migrator") and not masking.masks("deployer")
    assert masking.may_unmask("deployer") and not masking.may_unmask("migrator")
    ssn = masking.rules[0]
    assert ssn.columns == ("*.*.ssn",)  # table.column: any schema
    assert ssn.matches_column("ehr.patients.ssn", "ssn")
    assert not ssn.matches_column("ehr.patients.ssn_hint", "ssn_hint")
    digest = masking.digest()
    assert digest is not None and len(digest) == 64
    assert config({"roles": ["migrator"]}).digest() != digest  # another policy
    assert config({"roles": ["migrator"]}).rules == DEFAULT_RULES  # the built-in set


@pytest.mark.parametrize(
    ("masking", "message"),
    [
        ({"roles": ["nobody"]}, "masking.roles: 'nobody' is not a role under [roles]"),
        ({"roles": ["migrator"], "colour": 1}, "masking.colour"),
        ({"roles": ["migrator"], "copy": "maybe"}, "masking.copy = 'maybe'; use refuse or mask"),
        ({"roles": ["migrator"], "non_text": "zero"}, "masking.non_text"),
        ({"roles": ["migrator"], "rules": []}, "masking.rules must be a non-empty array"),
        (
            {"roles": ["migrator"], "rules": [{"name": "a", "action": "shred", "names": ["x"]}]},
            "masking.rules.a.action = 'shred'",
        ),
        ({"roles": ["migrator"], "rules": [{"name": "a"}]}, "masking.rules.a matches nothing"),
        (
            {"roles": ["migrator"], "rules": [{"name": "a", "detect": ["iban"]}]},
            "'iban' is not a detector",
        ),
        (
            {"roles": ["migrator"], "rules": [{"name": "a", "columns": ["a.b.c.d"]}]},
            "is not [schema.][table.]column",
        ),
        (
            {"roles": ["migrator"], "rules": [{"name": "a", "names": ["x"], "keep_last": 0}]},
            "keep_last must be a whole number from 1 to 8",
        ),
        (
            {
                "roles": ["migrator"],
                "rules": [{"name": "p", "names": ["x"], "action": "pseudonym"}],
            },
            "no masking.secret_env or masking.secret_file",
        ),
        ({"roles": ["migrator"], "mrn": "("}, "masking.mrn is not a valid pattern"),
        (
            {
                "roles": ["migrator"],
                "rules": [{"name": "a", "names": ["x"]}, {"name": "a", "names": ["y"]}],
            },
            "duplicate names",
        ),
    ],
)
def test_mistakes_are_one_line(masking: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config(masking)
    text = str(raised.value)
    assert message in text and "\n" not in text


def test_detectors_find_phi_in_values() -> None:
    found = detectors(("ssn", "email", "phone", "credit_card", "dob", "mrn"))

    def names(value: str) -> list[str]:
        return [d.name for _, _, d in find(value, found)]

    assert names("ssn 123-45-6789 ok") == ["ssn"]
    assert names("mail a.b+c@mail.example.org") == ["email"]
    assert names("(555) 010-4477, +1 555 010 3344, 555.010.9120") == ["phone"] * 3
    assert names("card 4111 1111 1111 1111") == ["credit_card"]
    assert names("card 4111 1111 1111 1112") != ["credit_card"]  # fails Luhn
    assert names("born 1980-12-10, 12/09/1966, March 4, 1980") == ["dob"] * 3
    assert names("MRN00012345") == ["mrn"]
    assert names("nothing here, id 42") == []
    assert luhn("79927398713") and not luhn("79927398710")


def test_replacements() -> None:
    assert keep_last("123-45-6789", 4) == "***-**-6789"
    assert keep_last("abc", 4) == "***"  # never the whole value
    assert keep_domain("ada@example.org", "[R]") == "***@example.org"
    assert keep_domain("no-at-sign", "[R]") == "[R]"
    one, two = pseudonym(b"k", "MRN1"), pseudonym(b"k", "MRN1")
    assert one == two and one != pseudonym(b"other", "MRN1") and len(one) == 19


def test_a_missing_pseudonym_key_stops_the_gateway_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runner.gateway.preflight import preflight

    monkeypatch.setenv("X", "db-password")
    monkeypatch.delenv("H13_MASKING_KEY", raising=False)
    masking = {
        "roles": ["migrator"],
        "secret_env": "H13_MASKING_KEY",
        "rules": [{"name": "mrn", "names": ["mrn"], "action": "pseudonym"}],
    }
    config = parse_gateway_config({**BASE, "masking": masking})
    assert "masking: environment variable H13_MASKING_KEY is not set; export it" in preflight(
        config
    )
    monkeypatch.setenv("H13_MASKING_KEY", "a long random key")
    assert not any("masking" in p for p in preflight(config))
