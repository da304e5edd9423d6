"""OIDC validation against a real loopback issuer: real HTTP, real RS256/ES256 tokens."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from oidc_issuer import AUDIENCE, OidcIssuer

from runner.gateway.oidc import (
    GITHUB_ISSUER,
    IssuerConfig,
    OidcValidator,
    TokenRejected,
    claims_match,
)


class ReplaySet:
    """What StateStore.remember_jti does, in memory."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()

    def __call__(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        with self._lock:
            if (issuer, jti) in self.seen:
                return False
            self.seen[(issuer, jti)] = expires_at
            return True


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as iss:
        yield iss


@pytest.fixture
def replay() -> ReplaySet:
    return ReplaySet()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def validator(issuer: OidcIssuer, replay: ReplaySet, clock: Clock) -> OidcValidator:
    return OidcValidator(
        [IssuerConfig("github", issuer.issuer)], AUDIENCE, replay=replay, clock=clock
    )


def rejected(validator: OidcValidator, token: str) -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        validator.validate(token)
    message = str(info.value)
    if len(token) > 16:
        assert token not in message
    for segment in token.split("."):
        if len(segment) > 16:
            assert segment not in message
    assert "\n" not in message
    return info.value


def b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def unb64(text: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return decoded


# -- the good path --------------------------------------------------------------------------


def test_valid_github_token_gives_principal(
    issuer: OidcIssuer, validator: OidcValidator, replay: ReplaySet
) -> None:
    token = issuer.token(run_id="4242", sha="ab" * 20)
    principal = validator.validate(token)
    assert principal.iss == issuer.issuer
    assert principal.sub == "repo:acme/ehr-api:environment:production"
    assert principal.actor == "alice"
    assert principal.repository == "acme/ehr-api"
    assert principal.ref == "refs/heads/main"
    assert principal.sha == "ab" * 20
    assert principal.run_id == "4242"
    assert principal.workflow == "acme/ehr-api/.github/workflows/deploy.yml@refs/heads/main"
    assert principal.claims["environment"] == "production"
    assert principal.claims["aud"] == AUDIENCE
    # one discovery, one JWKS fetch; the jti was remembered with the token's exp
    assert issuer.requests == ["/.well-known/openid-configuration", "/.well-known/jwks"]
    ((key, expires_at),) = replay.seen.items()
    assert key == (issuer.issuer, principal.claims["jti"])
    assert expires_at == datetime.fromtimestamp(principal.claims["exp"], UTC)


def test_es256_token_and_cached_jwks(issuer: OidcIssuer, validator: OidcValidator) -> None:
    validator.validate(issuer.token())
    principal = validator.validate(issuer.token(alg="ES256"))
    assert principal.actor == "alice"
    assert issuer.requests.count("/.well-known/jwks") == 1  # cached


def test_gitlab_style_issuer_with_discovery() -> None:
    with OidcIssuer(style="gitlab", path="/gitlab") as gitlab:
        validator = OidcValidator([IssuerConfig("gitlab", gitlab.issuer)], AUDIENCE)
        principal = validator.validate(gitlab.token())
        assert gitlab.requests == [
            "/gitlab/.well-known/openid-configuration",
            "/gitlab/oauth/discovery/keys",
        ]
    assert principal.sub == "project_path:acme/ehr-api:ref_type:branch:ref:main"
    assert principal.repository == "acme/ehr-api"
    assert principal.actor == "alice"
    assert principal.ref == "main"
    assert principal.claims["ref_protected"] == "true"
    assert principal.claims["job_project_path"] == "acme/ehr-api"


def test_configured_jwks_uri_skips_discovery(issuer: OidcIssuer) -> None:
    validator = OidcValidator(
        [IssuerConfig("github", issuer.issuer, jwks_uri=issuer.jwks_url)], AUDIENCE
    )
    validator.validate(issuer.token())
    assert issuer.requests == ["/.well-known/jwks"]


def test_two_issuers_each_with_own_keys() -> None:
    with OidcIssuer(path="/a") as a, OidcIssuer(path="/b", style="gitlab") as b:
        validator = OidcValidator(
            [IssuerConfig("a", a.issuer), IssuerConfig("b", b.issuer)], AUDIENCE
        )
        assert validator.validate(a.token()).iss == a.issuer
        assert validator.validate(b.token()).iss == b.issuer
        # a token claiming b's issuer but signed with a's key (same kid name)
        assert rejected(validator, a.token(iss=b.issuer)).reason == "bad-signature"


def test_token_without_jti_when_not_required(issuer: OidcIssuer) -> None:
    validator = OidcValidator([IssuerConfig("x", issuer.issuer, require_jti=False)], AUDIENCE)
    assert validator.validate(issuer.token(jti=None)).sub


def test_leeway_accepts_small_skew(issuer: OidcIssuer, validator: OidcValidator) -> None:
    now = int(time.time())
    validator.validate(issuer.token(exp=now - 30, iat=now - 330, nbf=now - 330))
    validator.validate(issuer.token(iat=now + 30, nbf=now + 30))


# -- the attack matrix ----------------------------------------------------------------------


def test_alg_none_refused(issuer: OidcIssuer, validator: OidcValidator) -> None:
    error = rejected(validator, issuer.unsigned_token())
    assert error.reason == "algorithm-not-allowed"
    assert "'none'" in str(error)
    assert issuer.requests == []  # refused before any key was even fetched


def test_hs256_signed_with_rsa_public_key_refused(
    issuer: OidcIssuer, validator: OidcValidator
) -> None:
    validator.validate(issuer.token())  # keys are cached: the forgery names a known kid
    error = rejected(validator, issuer.forge_hs256_with_public_key())
    assert error.reason == "algorithm-not-allowed"
    assert "'HS256'" in str(error)


def test_expired(issuer: OidcIssuer, validator: OidcValidator) -> None:
    now = int(time.time())
    token = issuer.token(iat=now - 900, nbf=now - 900, exp=now - 120)
    error = rejected(validator, token)
    assert error.reason == "expired"
    assert "expired" in str(error)


def test_expired_by_clock(issuer: OidcIssuer, validator: OidcValidator, clock: Clock) -> None:
    token = issuer.token(lifetime_s=300)
    clock.offset = 300 + 61
    assert rejected(validator, token).reason == "expired"


def test_not_yet_valid(issuer: OidcIssuer, validator: OidcValidator) -> None:
    token = issuer.token(nbf=int(time.time()) + 600, lifetime_s=1200)
    assert rejected(validator, token).reason == "not-yet-valid"


def test_issued_in_future(issuer: OidcIssuer, validator: OidcValidator) -> None:
    token = issuer.token(iat=int(time.time()) + 600, nbf=None, lifetime_s=1200)
    assert rejected(validator, token).reason == "issued-in-future"


def test_wrong_audience(issuer: OidcIssuer, validator: OidcValidator) -> None:
    error = rejected(validator, issuer.token(audience="https://vault.example.com"))
    assert error.reason == "wrong-audience"
    assert rejected(validator, issuer.token(aud=None)).reason == "missing-claim"


def test_wrong_issuer(issuer: OidcIssuer, validator: OidcValidator) -> None:
    error = rejected(validator, issuer.token(iss=GITHUB_ISSUER))
    assert error.reason == "wrong-issuer"
    assert GITHUB_ISSUER in str(error)
    # a prefix or a trailing slash is another issuer
    assert rejected(validator, issuer.token(iss=issuer.issuer + "/")).reason == "wrong-issuer"
    assert issuer.requests == []


def test_unknown_kid_refetch_is_rate_limited(
    issuer: OidcIssuer, validator: OidcValidator, clock: Clock
) -> None:
    validator.validate(issuer.token())
    assert issuer.requests.count("/.well-known/jwks") == 1
    first = rejected(validator, issuer.token(kid="nobody-1"))
    assert first.reason == "unknown-kid"
    assert "'nobody-1'" in str(first)
    assert issuer.requests.count("/.well-known/jwks") == 2  # one refetch
    assert rejected(validator, issuer.token(kid="nobody-2")).reason == "unknown-kid"
    assert issuer.requests.count("/.well-known/jwks") == 2  # not another
    clock.offset = 31
    assert rejected(validator, issuer.token(kid="nobody-3")).reason == "unknown-kid"
    assert issuer.requests.count("/.well-known/jwks") == 3
    assert issuer.requests.count("/.well-known/openid-configuration") == 1


def test_unknown_kid_on_first_fetch_does_not_fetch_twice(
    issuer: OidcIssuer, validator: OidcValidator
) -> None:
    assert rejected(validator, issuer.token(kid="nobody")).reason == "unknown-kid"
    assert issuer.requests.count("/.well-known/jwks") == 1


def test_rotated_key_is_picked_up(issuer: OidcIssuer, validator: OidcValidator) -> None:
    validator.validate(issuer.token())
    issuer.rotate_key("test-key-2")
    token = issuer.token()
    assert unb64(token.split(".")[0])["kid"] == "test-key-2"
    assert validator.validate(token).sub
    assert validator.validate(issuer.token(alg="ES256")).sub
    assert issuer.requests.count("/.well-known/jwks") == 2


def test_tampered_payload(issuer: OidcIssuer, validator: OidcValidator) -> None:
    header, payload, signature = issuer.token().split(".")
    claims = unb64(payload)
    claims["repository"] = "evil/fork"
    tampered = f"{header}.{b64(claims)}.{signature}"
    assert rejected(validator, tampered).reason == "bad-signature"


def test_signed_by_another_key_with_known_kid(issuer: OidcIssuer, validator: OidcValidator) -> None:
    validator.validate(issuer.token())
    assert rejected(validator, issuer.forge_with_other_key()).reason == "bad-signature"
    assert rejected(validator, issuer.forge_with_other_key(alg="ES256")).reason == "bad-signature"


def test_replayed_jti(issuer: OidcIssuer, validator: OidcValidator) -> None:
    token = issuer.token()
    validator.validate(token)
    error = rejected(validator, token)
    assert error.reason == "replayed"
    # another token with the same jti is a replay too
    jti = unb64(token.split(".")[1])["jti"]
    assert rejected(validator, issuer.token(jti=jti)).reason == "replayed"


def test_rejected_token_does_not_spend_its_jti(
    issuer: OidcIssuer, validator: OidcValidator, replay: ReplaySet
) -> None:
    rejected(validator, issuer.token(audience="elsewhere", jti="j-1"))
    assert replay.seen == {}
    validator.validate(issuer.token(jti="j-1"))


@pytest.mark.parametrize("claim", ["exp", "sub", "iat", "jti"])
def test_missing_required_claim(issuer: OidcIssuer, validator: OidcValidator, claim: str) -> None:
    removed: dict[str, Any] = {claim: None}
    error = rejected(validator, issuer.token(**removed))
    assert error.reason == "missing-claim"
    assert claim in str(error)


def test_key_of_wrong_family_is_not_used(issuer: OidcIssuer, validator: OidcValidator) -> None:
    # an RS256 token naming the EC key's kid
    token = issuer.token(kid=issuer.kid + "-ec")
    assert rejected(validator, token).reason == "algorithm-not-allowed"


def test_algorithm_outside_issuer_allow_list(issuer: OidcIssuer) -> None:
    validator = OidcValidator([IssuerConfig("x", issuer.issuer, algorithms=("RS256",))], AUDIENCE)
    assert rejected(validator, issuer.token(alg="ES256")).reason == "algorithm-not-allowed"
    assert issuer.requests == []


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "!!!.???.sig", b64({"alg": "RS256"}) + ".bm90IGpzb24.sig"],
)
def test_malformed(validator: OidcValidator, token: str) -> None:
    assert rejected(validator, token).reason == "malformed"


def test_non_object_payload(validator: OidcValidator) -> None:
    token = b64({"alg": "RS256", "kid": "k"}) + "." + base64.urlsafe_b64encode(b"[1]").decode()
    assert rejected(validator, token + ".sig").reason == "malformed"


def test_jwks_unavailable(issuer: OidcIssuer, validator: OidcValidator, clock: Clock) -> None:
    issuer.unavailable = True
    error = rejected(validator, issuer.token())
    assert error.reason == "jwks-unavailable"
    assert "503" in str(error)
    # failed fetches are rate-limited too
    assert rejected(validator, issuer.token()).reason == "jwks-unavailable"
    assert len(issuer.requests) == 1
    issuer.unavailable = False
    clock.offset = 31
    assert validator.validate(issuer.token()).sub


def test_unreachable_issuer() -> None:
    with OidcIssuer() as gone:
        token = gone.token()
        url = gone.issuer
    validator = OidcValidator([IssuerConfig("gone", url)], AUDIENCE, http_timeout_s=2)
    assert rejected(validator, token).reason == "jwks-unavailable"


def test_discovery_naming_another_issuer_is_refused(issuer: OidcIssuer) -> None:
    # configured under another spelling of the same server: discovery names issuer.issuer
    alias = issuer.issuer.replace("127.0.0.1", "localhost")
    validator = OidcValidator([IssuerConfig("alias", alias)], AUDIENCE)
    error = rejected(validator, issuer.token(iss=alias))
    assert error.reason == "jwks-unavailable"
    assert "another issuer" in str(error)


def test_concurrent_validation(issuer: OidcIssuer, validator: OidcValidator) -> None:
    tokens = [issuer.token() for _ in range(20)]
    errors: list[BaseException] = []

    def check(token: str) -> None:
        try:
            validator.validate(token)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=check, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert issuer.requests.count("/.well-known/jwks") == 1


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithms",
    [("HS256",), ("RS256", "HS512"), ("none",), ("None",), (), ("RS256", "hs256")],
)
def test_symmetric_or_none_algorithms_refused_in_config(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        IssuerConfig("x", "https://issuer.example", algorithms=algorithms)


def test_config_checks() -> None:
    assert IssuerConfig("x", "https://i.example", algorithms=("PS256", "ES384", "EdDSA"))
    with pytest.raises(ValueError):
        IssuerConfig("x", "file:///etc/passwd")
    with pytest.raises(ValueError):
        IssuerConfig("x", "https://i.example", jwks_uri="file:///keys.json")
    with pytest.raises(ValueError):
        OidcValidator([IssuerConfig("a", "https://i.example")] * 2, AUDIENCE)
    with pytest.raises(ValueError):
        OidcValidator([IssuerConfig("a", "https://i.example")], "")


# -- secrecy ------------------------------------------------------------------------------------


def test_token_never_in_messages_or_logs(
    issuer: OidcIssuer, validator: OidcValidator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    now = int(time.time())
    makers: list[Callable[[], str]] = [
        issuer.unsigned_token,
        issuer.forge_hs256_with_public_key,
        issuer.forge_with_other_key,
        lambda: issuer.token(kid="nope"),
        lambda: issuer.token(exp=now - 600),
        lambda: issuer.token(audience="x"),
        lambda: issuer.token(iss="https://elsewhere.example"),
    ]
    for make in makers:
        token = make()
        error = rejected(validator, token)
        assert token not in repr(error)
        assert error.__cause__ is None
        signature = token.split(".")[2]
        if signature:
            assert signature not in caplog.text
        assert token not in caplog.text


# -- claims_match -------------------------------------------------------------------------------

CLAIMS: dict[str, Any] = {
    "repository": "acme/ehr-api",
    "ref": "refs/heads/main",
    "environment": "production",
    "ref_protected": "true",
    "runner_id": 12,
    "email_verified": True,
    "groups_direct": ["acme", "acme/platform"],
    "empty": None,
}


def test_claims_match_exact() -> None:
    assert claims_match(CLAIMS, {"repository": "acme/ehr-api", "ref": "refs/heads/main"})
    assert not claims_match(CLAIMS, {"repository": "acme/ehr-api", "ref": "refs/heads/dev"})
    assert not claims_match(CLAIMS, {"repository": "ACME/ehr-api"})  # case-sensitive
    assert claims_match(CLAIMS, {})


def test_claims_match_glob() -> None:
    assert claims_match(CLAIMS, {"repository": "acme/*"})
    assert claims_match(CLAIMS, {"ref": "refs/heads/ma?n"})
    assert claims_match(CLAIMS, {"ref": "refs/heads/[lm]ain"})
    assert not claims_match(CLAIMS, {"repository": "acme-*"})
    assert not claims_match({"repository": "acme/ehr-api-fork"}, {"repository": "acme/ehr-api"})


def test_claims_match_literal_without_glob_chars() -> None:
    # no glob characters: exact only, so a "." or "+" is not special either
    assert not claims_match({"ref": "refs/heads/mainX"}, {"ref": "refs/heads/main"})


def test_claims_match_list() -> None:
    assert claims_match(CLAIMS, {"environment": ["staging", "production"]})
    assert claims_match(CLAIMS, {"environment": ["staging", "prod*"]})
    assert not claims_match(CLAIMS, {"environment": ["staging", "qa"]})
    assert not claims_match(CLAIMS, {"environment": []})


def test_claims_match_missing_never_matches() -> None:
    assert not claims_match(CLAIMS, {"job_project_path": "*"})
    assert not claims_match(CLAIMS, {"empty": "*"})
    assert not claims_match(CLAIMS, {"job_project_path": ["*", "acme/ehr-api"]})


def test_claims_match_non_string_values() -> None:
    assert claims_match(CLAIMS, {"ref_protected": "true", "email_verified": "true"})
    assert claims_match(CLAIMS, {"runner_id": "12"})
    assert claims_match(CLAIMS, {"groups_direct": "acme/platform"})
    assert not claims_match(CLAIMS, {"groups_direct": "acme/other"})


def test_gitlab_fork_rule() -> None:
    """The rule the oidc module docstring recommends refuses a fork's MR pipeline."""
    rule: dict[str, str | list[str]] = {
        "project_path": "acme/ehr-api",
        "job_project_path": "acme/ehr-api",
        "ref_protected": "true",
        "ref_type": "branch",
        "ref": "main",
        "pipeline_source": ["push", "web", "schedule"],
    }
    with OidcIssuer(style="gitlab") as gitlab:
        own = gitlab.gitlab_claims()
        # GitLab >= 18.2.2: a fork's MR pipeline run in the parent names the fork in
        # project_path and the parent in job_project_path (>= 18.4)
        fork = gitlab.gitlab_claims(
            project_path="mallory/ehr-api",
            job_project_path="acme/ehr-api",
            pipeline_source="merge_request_event",
        )
        fork_pushed = gitlab.gitlab_claims(project_path="mallory/ehr-api")
        old_gitlab = {k: v for k, v in own.items() if not k.startswith("job_")}
    assert claims_match(own, rule)
    assert not claims_match(fork, rule)
    assert not claims_match(fork_pushed, rule)
    assert not claims_match(old_gitlab, rule)  # no job_project_path: fails closed
