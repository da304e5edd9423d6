"""OIDC token validation: a CI job's ID token in, a verified :class:`Principal` out.

What is checked, in this order (the first failure is the answer):

1. The token is three base64url segments with a JSON header and a JSON object
   payload (``malformed``).
2. The *unverified* ``iss`` picks the issuer configuration by exact string match
   (``wrong-issuer``). Nothing else is read from the unverified payload.
3. The header ``alg`` is in that issuer's allow-list *before any key is used*
   (``algorithm-not-allowed``). Only asymmetric algorithms can be configured, so
   ``alg: none`` and the classic HS256-signed-with-the-RSA-public-key forgery are
   refused here, without ever handing a public key to an HMAC.
4. The header ``kid`` names a key in the issuer's JWKS (``unknown-kid``). The JWKS
   is fetched from the configured ``jwks_uri`` (or the one the issuer's discovery
   document names) and cached per issuer; an unknown ``kid`` refreshes it at most
   once per ``min_refresh_interval_s`` (key rotation is picked up, a flood of
   made-up kids is not a flood of requests). Keys come only from that JWKS:
   ``jku``, ``x5u`` and ``jwk`` headers are never followed.
5. The key's type matches the alg family: RSA for RS*/PS*, EC on the right curve
   for ES*, OKP for EdDSA; a JWK that pins another ``alg`` or is not for ``sig``
   is not used (``algorithm-not-allowed``).
6. ``jwt.decode`` with exactly that one algorithm, the audience, the issuer and
   ``require = exp, iat, iss, aud, sub`` (``bad-signature``, ``wrong-audience``,
   ``wrong-issuer``, ``missing-claim``, ``malformed``).
7. Times, against the validator's clock with ``leeway_s``: ``exp`` passed
   (``expired``), ``iat`` in the future (``issued-in-future``), ``nbf`` in the
   future (``not-yet-valid``). They are checked here rather than by PyJWT so
   that one injectable clock governs both them and the JWKS refresh limits.
8. ``jti``: required unless the issuer says otherwise (``missing-claim``), then
   ``replay(issuer, jti, exp)`` must answer True (``replayed``). Only a token that
   passed every other check spends its ``jti``.

A rejection is a :class:`TokenRejected` with a short machine-readable ``reason``
and a one-line message. Neither the token nor any part of it beyond short,
quoted claim or header values ever appears in a message or a log line.

Access rules: which claims to pin
=================================

:func:`claims_match` checks a verified token's claims against an access rule
(every listed claim must match). Which claims a rule must list so that a fork
cannot pass as the project differs by code host.

**GitHub** (``token.actions.githubusercontent.com``; not the subject of this
note): pin ``repository`` (and the stable ``repository_id`` /
``repository_owner_id``) plus ``ref`` or ``environment``; a ``pull_request``
run's ``ref`` is ``refs/pull/N/merge``, never ``refs/heads/main``.

**GitLab** — sources: GitLab docs, "OpenID Connect (OIDC) Authentication Using
ID Tokens", section "Token payload"
(https://docs.gitlab.com/ci/secrets/id_token_authentication/); gitlab-org/gitlab
issues #561735 ("id_token regression in 18.2.2 for merge requests from forks")
and #563038 ("Add job project related claims in CI ID Tokens"); MRs !202241
("Add Job Project claims to CI ID Tokens") and !205700 (its backport to 18.3).
What they say (paraphrased; quotes are verbatim):

* ``project_path`` / ``project_id`` / ``namespace_path`` / ``namespace_id`` (and the
  ``project_path:`` part of the default ``sub``): the project running the job,
  except that in merge-request pipelines they name the MR's *source* project.
  Since a security fix shipped in GitLab 18.2.2 (#561735 reports the change,
  #563038 explains it), a merge-request pipeline *from a fork that runs in the
  parent project* therefore carries the **fork's** path and id here. Before
  that fix (GitLab <= 18.2.1 and unpatched older lines) these claims named the
  parent project, so such a pipeline — running the fork's code — was
  indistinguishable from the parent's own by ``project_path``.
* ``job_project_path`` / ``job_project_id`` / ``job_namespace_path`` /
  ``job_namespace_id`` (GitLab 18.4, backported to 18.3): the project the job
  runs in, without exception — the **parent** for a fork's merge-request
  pipeline run in the parent. Per !202241 they differ from the ``project_*``
  claims only in exactly that case. Pinning ``job_project_path`` alone
  therefore lets a fork through; it is useful only *together* with
  ``project_path`` (both equal to the project = not a fork's pipeline).
* ``ref`` / ``ref_path``: in merge-request pipelines, the *source* branch;
  ``ref_protected``: "``true`` if the Git ref is protected, ``false``
  otherwise". In a fork's pipeline the ref and its protection belong to the
  fork, whose owner controls both: ``ref_protected`` means something only next
  to a pinned ``project_path``.
* ``pipeline_source``: ``merge_request_event`` for merge-request pipelines. The
  merge-request pipelines page says external contributors working in forks
  cannot create pipelines in the parent project; a fork's code reaches the
  parent's runners only as a merge-request pipeline (our reading), so refusing
  ``merge_request_event`` refuses it on every GitLab version.
* ``ci_config_ref_uri``: the top-level pipeline definition, e.g.
  ``gitlab.example.com/my-group/my-project//.gitlab-ci.yml@refs/heads/main``;
  null when the definition is not in the same project.
* The docs (section on cloud trust policies) advise pinning the stable
  ``project_id`` / ``namespace_id`` next to path claims, so a renamed or
  re-created path does not inherit access.

So a GitLab deploy rule pins, all at once::

    project_path     = "acme/ehr-api"   # >= 18.2.2: a fork's MR pipeline carries the fork here
    project_id       = "1234"           # stable id: a re-created path does not match
    job_project_path = "acme/ehr-api"   # >= 18.3/18.4; equal to project_path = not a fork's
    ref_protected    = "true"           # meaningful because project_path is pinned
    ref_type = "branch"; ref = "main"   # or environment + environment_protected = "true"
    pipeline_source  = ["push", "web", "schedule"]   # never merge_request_event

and, where the pipeline definition lives in the project itself,
``ci_config_ref_uri = "gitlab.example.com/acme/ehr-api//.gitlab-ci.yml@refs/heads/main"``.
A rule naming a claim the token lacks never matches (fail closed): on a GitLab
without ``job_project_path`` drop that line and rely on ``pipeline_source`` (any
version) plus ``project_path`` (>= 18.2.2). GitLab MR !258245 proposes further
``source_project_*`` claims; rules here do not rely on them.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt

from runner.gateway.model import Principal

log = logging.getLogger(__name__)

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITLAB_COM_ISSUER = "https://gitlab.com"

# Asymmetric JWS algorithms only: a verifier key is public, so a symmetric
# algorithm (HS*) or "none" can never be configured.
_KEY_FAMILY: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
ALLOWED_ALGORITHMS = frozenset(_KEY_FAMILY)

_MAX_DOCUMENT_BYTES = 1 << 20
_MAX_SHOWN = 80


@dataclass(frozen=True)
class IssuerConfig:
    """One trusted OIDC issuer."""

    name: str  # "github", "gitlab", or any label
    issuer: str  # the exact expected `iss`
    jwks_uri: str | None = None  # default: "jwks_uri" of {issuer}/.well-known/openid-configuration
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    require_jti: bool = True  # a token without `jti` is "missing-claim"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("issuer config: name must not be empty")
        _check_url(self.issuer, f"issuer {self.name!r}: issuer")
        if self.jwks_uri is not None:
            _check_url(self.jwks_uri, f"issuer {self.name!r}: jwks_uri")
        if isinstance(self.algorithms, str) or not self.algorithms:
            raise ValueError(f"issuer {self.name!r}: algorithms must be a non-empty tuple")
        for alg in self.algorithms:
            if alg not in ALLOWED_ALGORITHMS:
                raise ValueError(
                    f"issuer {self.name!r}: algorithm {alg!r} is not allowed; only asymmetric "
                    f"algorithms may be configured ({', '.join(sorted(ALLOWED_ALGORITHMS))}), "
                    "never 'none' nor HS*"
                )


def github_issuer(**kwargs: Any) -> IssuerConfig:
    """GitHub Actions' issuer (``token.actions.githubusercontent.com``)."""
    return IssuerConfig(**{"name": "github", "issuer": GITHUB_ISSUER, **kwargs})


def _not_text(value: Any, where: str = "claims") -> str | None:
    """The path of the first value whose text is not storable (a lone surrogate, a NUL)."""
    if isinstance(value, str):
        bad = "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value)
        return where if bad else None
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if _not_text(str(key)) is not None:
                return where + "[key]"
            items.append((f"{where}.{key}", item))
    elif isinstance(value, list):
        items = [(f"{where}[{n}]", item) for n, item in enumerate(value)]
    for path, item in items:
        found = _not_text(item, path)
        if found is not None:
            return found
    return None


class TokenRejected(Exception):
    """A token that does not authenticate anyone.

    ``reason`` is one of: expired, bad-signature, wrong-audience, wrong-issuer,
    unknown-kid, algorithm-not-allowed, replayed, not-yet-valid, malformed,
    issued-in-future, missing-claim, jwks-unavailable. ``str()`` is a one-line
    message naming the problem; it never holds the token.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


ReplayCheck = Callable[[str, str, datetime], bool]


@dataclass
class _IssuerState:
    config: IssuerConfig
    lock: threading.Lock = field(default_factory=threading.Lock)
    jwks_uri: str | None = None
    keys: dict[str, list[dict[str, Any]]] | None = None  # kid -> JWKs with that kid
    fetched_at: float | None = None  # last successful fetch
    failed_at: float | None = None  # last failed fetch
    forced_at: float | None = None  # last refresh caused by an unknown kid


class OidcValidator:
    """Validates ID tokens from the configured issuers for one audience.

    Thread-safe: the JWKS cache of each issuer sits behind its own lock, and
    fetches for one issuer are serialised (no thundering herd on rotation).
    A cached JWKS is refetched when older than ``jwks_max_age_s``; a failed
    fetch is not retried for ``min_refresh_interval_s``.
    """

    def __init__(
        self,
        issuers: Sequence[IssuerConfig],
        audience: str,
        *,
        replay: ReplayCheck | None = None,
        leeway_s: int = 60,
        http_timeout_s: float = 5.0,
        min_refresh_interval_s: float = 30.0,
        jwks_max_age_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not audience:
            raise ValueError("audience must not be empty")
        if leeway_s < 0:
            raise ValueError("leeway_s must not be negative")
        self._issuers: dict[str, _IssuerState] = {}
        for config in issuers:
            if config.issuer in self._issuers:
                raise ValueError(f"issuer {config.issuer!r} is configured twice")
            self._issuers[config.issuer] = _IssuerState(config, jwks_uri=config.jwks_uri)
        if not self._issuers:
            raise ValueError("at least one issuer must be configured")
        self.audience = audience
        self._replay = replay
        self._leeway = leeway_s
        self._timeout = http_timeout_s
        self._min_refresh = min_refresh_interval_s
        self._max_age = jwks_max_age_s
        self._clock = clock
        self._opener = urllib.request.build_opener(_HttpOnlyRedirects())

    @property
    def issuers(self) -> list[IssuerConfig]:
        return [state.config for state in self._issuers.values()]

    # -- validation ---------------------------------------------------------------------

    def validate(self, token: str) -> Principal:
        """The verified principal, or :class:`TokenRejected`."""
        return Principal.from_claims(self.validate_claims(token))

    def validate_claims(self, token: str) -> dict[str, Any]:
        """Every verified claim of ``token``, or :class:`TokenRejected`."""
        header, unverified = _peek(token)

        iss = unverified.get("iss")
        if iss is None:
            raise TokenRejected("missing-claim", "token has no iss claim")
        if not isinstance(iss, str):
            raise TokenRejected("malformed", "token iss claim is not a string")
        state = self._issuers.get(iss)
        if state is None:
            raise TokenRejected("wrong-issuer", f"token issuer {_show(iss)} is not trusted")
        config = state.config

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in config.algorithms:
            raise TokenRejected(
                "algorithm-not-allowed",
                f"token algorithm {_show(alg)} is not allowed for issuer {config.name!r} "
                f"(allowed: {', '.join(config.algorithms)})",
            )

        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("unknown-kid", "token header names no key (kid)")
        key = self._key(state, kid, alg)

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=config.issuer,
                leeway=self._leeway,
                options={
                    "require": ["exp", "iat", "iss", "aud", "sub"],
                    # Times are checked below against self._clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected(
                "bad-signature", f"token signature does not verify with key {_show(kid)}"
            ) from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(
                "wrong-audience", f"token audience is not {self.audience!r}"
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("wrong-issuer", "token issuer does not match") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected("missing-claim", f"token has no {exc.claim} claim") from None
        except jwt.InvalidAlgorithmError:
            raise TokenRejected(
                "algorithm-not-allowed", f"token algorithm {_show(alg)} is not allowed"
            ) from None
        except (jwt.InvalidKeyError, jwt.PyJWKError):
            raise TokenRejected(
                "algorithm-not-allowed", f"key {_show(kid)} cannot verify {alg}"
            ) from None
        except jwt.PyJWTError as exc:
            raise TokenRejected("malformed", f"token is malformed ({type(exc).__name__})") from None

        bad = _not_text(claims)
        if bad is not None:
            # A lone surrogate or a NUL cannot be stored or audited as text; such a
            # token is refused (and the refusal recorded) rather than half-accepted.
            raise TokenRejected("malformed", f"token {_show(bad)} holds text that is not valid")
        now = self._clock()
        exp = _numeric(claims, "exp")
        iat = _numeric(claims, "iat")
        nbf = _numeric(claims, "nbf") if "nbf" in claims else None
        if exp <= now - self._leeway:
            raise TokenRejected("expired", f"token expired {int(now - exp)} s ago")
        if iat > now + self._leeway:
            raise TokenRejected(
                "issued-in-future", f"token issued {int(iat - now)} s in the future"
            )
        if nbf is not None and nbf > now + self._leeway:
            raise TokenRejected("not-yet-valid", f"token not valid for another {int(nbf - now)} s")

        jti = claims.get("jti")
        if jti is None:
            if config.require_jti:
                raise TokenRejected("missing-claim", "token has no jti claim")
        elif not isinstance(jti, str) or not jti:
            raise TokenRejected("malformed", "token jti claim is not a non-empty string")
        elif self._replay is not None:
            expires_at = datetime.fromtimestamp(exp, UTC)
            if not self._replay(config.issuer, jti, expires_at):
                raise TokenRejected(
                    "replayed", f"token id {_show(jti)} from {config.name!r} was already used"
                )
        return claims

    # -- keys ---------------------------------------------------------------------------

    def _key(self, state: _IssuerState, kid: str, alg: str) -> jwt.PyJWK:
        with state.lock:
            now = self._clock()
            fetched_now = False
            if state.keys is None or (
                state.fetched_at is not None and now - state.fetched_at > self._max_age
            ):
                if state.failed_at is not None and now - state.failed_at < self._min_refresh:
                    raise TokenRejected(
                        "jwks-unavailable",
                        f"keys of issuer {state.config.name!r} are unavailable (last fetch failed)",
                    )
                self._refresh(state, now)
                fetched_now = True
            assert state.keys is not None
            candidates = state.keys.get(kid)
            may_force = state.forced_at is None or now - state.forced_at >= self._min_refresh
            if not candidates and not fetched_now and may_force:
                state.forced_at = now
                log.info(
                    "issuer %s: unknown key id %s, refreshing JWKS", state.config.name, _show(kid)
                )
                self._refresh(state, now)
                candidates = state.keys.get(kid)
            if not candidates:
                raise TokenRejected(
                    "unknown-kid",
                    f"key {_show(kid)} is not in the JWKS of issuer {state.config.name!r}",
                )
        return _pick_key(candidates, kid, alg)

    def _refresh(self, state: _IssuerState, now: float) -> None:
        """Fetch the issuer's JWKS (and its discovery document, once).

        On failure raise ``jwks-unavailable`` and forget keys older than
        ``jwks_max_age_s``: a key the issuer may have withdrawn is not trusted forever.
        """
        name = state.config.name
        try:
            if state.jwks_uri is None:
                discovery_url = (
                    state.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                )
                discovery = self._get_json(discovery_url)
                if discovery.get("issuer") != state.config.issuer:
                    raise _FetchError("discovery document names another issuer")
                jwks_uri = discovery.get("jwks_uri")
                if not isinstance(jwks_uri, str):
                    raise _FetchError("discovery document has no jwks_uri")
                _check_url(jwks_uri, "jwks_uri", error=_FetchError)
                state.jwks_uri = jwks_uri
            document = self._get_json(state.jwks_uri)
            raw_keys = document.get("keys")
            if not isinstance(raw_keys, list):
                raise _FetchError("JWKS has no keys list")
        except _FetchError as exc:
            state.failed_at = now
            log.warning("issuer %s: cannot fetch keys: %s", name, exc)
            if (
                state.keys is not None
                and state.fetched_at is not None
                and (now - state.fetched_at > self._max_age)
            ):
                state.keys = None  # too old to trust any longer
            raise TokenRejected(
                "jwks-unavailable", f"keys of issuer {name!r} are unavailable: {exc}"
            ) from None
        keys: dict[str, list[dict[str, Any]]] = {}
        for item in raw_keys:
            if isinstance(item, dict) and isinstance(item.get("kid"), str):
                keys.setdefault(item["kid"], []).append(item)
        state.keys = keys
        state.fetched_at = now
        state.failed_at = None
        log.info("issuer %s: fetched JWKS with %d key(s)", name, sum(map(len, keys.values())))

    def _get_json(self, url: str) -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                body = response.read(_MAX_DOCUMENT_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise _FetchError(f"{url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _FetchError(f"{url}: {reason}") from None
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise _FetchError(f"{url}: document larger than {_MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(body)
        except ValueError:
            raise _FetchError(f"{url}: not JSON") from None
        if not isinstance(document, dict):
            raise _FetchError(f"{url}: not a JSON object")
        return document


class _FetchError(Exception):
    pass


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s) URLs."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, "redirect to a non-HTTP URL", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _pick_key(candidates: Sequence[Mapping[str, Any]], kid: str, alg: str) -> jwt.PyJWK:
    kty, crv = _KEY_FAMILY[alg]
    for jwk in candidates:
        if jwk.get("kty") != kty:
            continue
        if crv is not None and jwk.get("crv") != crv:
            continue
        if kty == "OKP" and jwk.get("crv") not in ("Ed25519", "Ed448"):
            continue
        if jwk.get("alg") not in (None, alg):
            continue
        if jwk.get("use") not in (None, "sig"):
            continue
        try:
            return jwt.PyJWK(dict(jwk), algorithm=alg)
        except jwt.PyJWTError:
            continue
    found = ", ".join(sorted({str(jwk.get("kty")) for jwk in candidates}))
    raise TokenRejected(
        "algorithm-not-allowed",
        f"key {_show(kid)} ({found}) is not a usable {kty} key for {alg}",
    )


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The unverified header and payload, only to choose the issuer and key."""
    if not isinstance(token, str):
        raise TokenRejected("malformed", "token is not a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRejected("malformed", "token is not a compact JWS (three segments)")
    header = _segment(parts[0], "header")
    payload = _segment(parts[1], "payload")
    return header, payload


def _segment(text: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        raise TokenRejected("malformed", f"token {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise TokenRejected("malformed", f"token {what} is not a JSON object")
    return value


def _numeric(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected("malformed", f"token {name} claim is not a number")
    return float(value)


def _show(value: object) -> str:
    """A short, quoted, one-line rendering of an untrusted header or claim value."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _check_url(url: str, what: str, *, error: type[Exception] = ValueError) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise error(f"{what} must be an http(s) URL, not {url!r}")


# -- access rules ----------------------------------------------------------------------------

_GLOB_CHARS = frozenset("*?[]")


def claims_match(claims: Mapping[str, Any], required: Mapping[str, str | list[str]]) -> bool:
    """True when every required claim matches.

    A required value matches exactly, or — only when it holds one of ``* ? [ ]`` —
    as an :func:`fnmatch.fnmatchcase` pattern (``*`` also crosses ``/``). A list of
    required values matches when any one does. A missing (or null) claim never
    matches. Claim values are compared as strings: booleans as ``"true"`` /
    ``"false"`` (GitLab sends ``ref_protected`` as the string ``"true"``), numbers
    in decimal; a claim whose value is a list (e.g. GitLab's ``groups_direct``)
    matches when any element does. An empty rule matches every token.
    """
    for name, wanted in required.items():
        if name not in claims:
            return False
        values = _claim_strings(claims[name])
        patterns = [wanted] if isinstance(wanted, str) else list(wanted)
        if not any(_value_matches(v, p) for v in values for p in patterns):
            return False
    return True


def _claim_strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, str):
        return [value]
    if isinstance(value, int | float):
        return [str(value)]
    if isinstance(value, list):
        return [s for item in value if not isinstance(item, list) for s in _claim_strings(item)]
    return []


def _value_matches(value: str, pattern: str) -> bool:
    if _GLOB_CHARS.isdisjoint(pattern):
        return value == pattern
    return fnmatch.fnmatchcase(value, pattern)
