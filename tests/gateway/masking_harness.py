"""The gateway with [masking] on the sample EHR schema (examples/ehr_masking.sql):
a ``migrator`` role whose results are masked, a ``deployer`` that may unmask one
statement with a grant. Shared by tests/gateway/test_masking*.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from gateway_harness import Gateway, running_gateway

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ehr_masking.sql"
KEY = "test-masking-key-not-a-secret-anywhere"

MASKING = """
[roles.migrator]
destructive = "needs-approval"
unanalysable = "needs-approval"
locking = "allow"
incompatible = "allow"

[[access]]
database = "ehr"
role = "migrator"
issuer = "ci"
claims = { repository = "acme/ehr-migrations" }

[masking]
roles = [%(roles)s]
unmask_roles = ["deployer"]
secret_env = "SIGNOFF_MASKING_KEY"
copy = "%(copy)s"
non_text = "%(non_text)s"

[[masking.rules]]
name = "ssn"
columns = ["*.ssn"]
action = "keep_last"

[[masking.rules]]
name = "birth-date"
names = ["date_of_birth", "dob"]

[[masking.rules]]
name = "email"
names = ["email"]
action = "keep_domain"

[[masking.rules]]
name = "mrn"
columns = ["ehr.patients.mrn"]
action = "pseudonym"

[[masking.rules]]
name = "person-name"
names = ["first_name", "last_name"]

[[masking.rules]]
name = "phone"
names = ["phone"]
action = "null"

[[masking.rules]]
name = "phi-values"
detect = ["ssn", "email", "phone", "credit_card", "dob", "mrn"]
"""

# The sample's PHI, none of which a masked session may ever receive.
SSNS = ["123-45-6789", "987-65-4321", "222-33-4444"]
EMAILS = ["ada@example.org", "alan@example.net", "grace.hopper@example.com"]
PHONES = ["(555) 010-4477", "555-010-9120", "+1 555 010 3344", "555-010-4477"]
BIRTH_DATES = ["1980-12-10", "1972-06-23", "1966-12-09", "12/09/1966"]
FIRST_NAMES = ["Ada", "Alan", "Grace"]


def load_sample(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SAMPLE.read_text(encoding="utf-8"))  # type: ignore[arg-type]
        grant_reads(conn, "ehr")


def grant_reads(conn: psycopg.Connection[Any], schema: str) -> None:
    """The gateway's upstream role is an owner role, not a superuser: it reads the
    sample's schema by a grant, as a deployment would give it."""
    conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO PUBLIC")
    conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO PUBLIC")


@contextlib.contextmanager
def masking_gateway(
    scratch_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    copy: str = "refuse",
    non_text: str = "null",
    roles: str = '"migrator", "deployer"',
    signing_key: Path | None = None,
) -> Iterator[Gateway]:
    load_sample(scratch_db_url)
    monkeypatch.setenv("SIGNOFF_MASKING_KEY", KEY)
    extra = MASKING % {"copy": copy, "non_text": non_text, "roles": roles}
    with running_gateway(
        scratch_db_url, tmp_path, monkeypatch, extra_config=extra, signing_key=signing_key
    ) as gateway:
        yield gateway


def migrator(gateway: Gateway) -> dict[str, Any]:
    return gateway.session(repository="acme/ehr-migrations", ref="refs/heads/main")


def deployer(gateway: Gateway) -> dict[str, Any]:
    return gateway.session()


def leaked(values: list[str], received: Any) -> list[str]:
    """The PHI values found in what a client received (rows, as text)."""
    text = repr(received)
    return [v for v in values if v in text]
