"""A loopback OIDC issuer for the demo and the tests: a real HTTP server on
127.0.0.1 signing real tokens (it never listens beyond loopback).

::

    with OidcIssuer() as issuer:                      # GitHub-style
        token = issuer.token(environment="staging")   # RS256, every claim overridable
        validator = OidcValidator([IssuerConfig("github", issuer.issuer)], "signoff-gateway")

    with OidcIssuer(style="gitlab", path="/gitlab") as issuer:   # GitLab claim names
        token = issuer.token(alg="ES256", ref_protected="false")

The server answers ``/.well-known/openid-configuration`` (below ``path``) and the
JWKS: ``/.well-known/jwks`` like GitHub, or ``/oauth/discovery/keys`` like
GitLab. ``requests`` lists every path asked for, so tests can count JWKS
fetches; ``unavailable = True`` makes every path answer 503.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = ["AUDIENCE", "OidcIssuer"]

AUDIENCE = "signoff-gateway"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_b64(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


class _KeyPair:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())

    @property
    def ec_kid(self) -> str:
        return self.kid + "-ec"

    def public_jwks(self) -> list[dict[str, Any]]:
        rsa_jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.ec.public_key()))
        rsa_jwk.update(kid=self.kid, use="sig", alg="RS256")
        ec_jwk.update(kid=self.ec_kid, use="sig", alg="ES256")
        return [rsa_jwk, ec_jwk]

    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class OidcIssuer:
    """A context manager running the issuer on ``127.0.0.1:<free port>`` in a thread."""

    def __init__(self, *, path: str = "", kid: str = "test-key-1", style: str = "github") -> None:
        if style not in ("github", "gitlab"):
            raise ValueError(f"style must be 'github' or 'gitlab', not {style!r}")
        if path and (not path.startswith("/") or path.endswith("/")):
            raise ValueError("path must be empty or start with '/' and not end with '/'")
        self.style = style
        self.path = path
        self.jwks_path = path + (
            "/oauth/discovery/keys" if style == "gitlab" else "/.well-known/jwks"
        )
        self.discovery_path = path + "/.well-known/openid-configuration"
        self.requests: list[str] = []
        self.unavailable = False  # True: every request answers 503
        self._keys: list[_KeyPair] = [_KeyPair(kid)]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.issuer = ""

    # -- server ------------------------------------------------------------------------

    def __enter__(self) -> OidcIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = self.path.split("?", 1)[0]
                with issuer._lock:
                    issuer.requests.append(route)
                if issuer.unavailable:
                    self._send(503, {"error": "unavailable"})
                elif route == issuer.discovery_path:
                    self._send(200, issuer.discovery())
                elif route == issuer.jwks_path:
                    self._send(200, issuer.public_jwks)
                else:
                    self._send(404, {"error": "not found"})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.issuer = f"http://127.0.0.1:{port}{self.path}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="oidc-issuer",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }

    @property
    def jwks_url(self) -> str:
        return self.issuer[: len(self.issuer) - len(self.path)] + self.jwks_path

    @property
    def public_jwks(self) -> dict[str, Any]:
        with self._lock:
            keys = list(self._keys)
        return {"keys": [jwk for pair in keys for jwk in pair.public_jwks()]}

    @property
    def kid(self) -> str:
        """The kid of the current RSA signing key (the EC key's is ``kid + "-ec"``)."""
        return self._keys[-1].kid

    def rotate_key(self, kid: str) -> None:
        """Add a new RSA and EC key (served in the JWKS with the old ones) and sign with them."""
        pair = _KeyPair(kid)
        with self._lock:
            self._keys.append(pair)

    # -- claims ------------------------------------------------------------------------

    def github_claims(
        self,
        *,
        repository: str = "acme/ehr-api",
        ref: str = "refs/heads/main",
        actor: str = "alice",
        environment: str | None = "production",
        **extra: Any,
    ) -> dict[str, Any]:
        """GitHub Actions claim names and shapes, ``sub`` consistent with the rest."""
        owner = repository.split("/", 1)[0]
        workflow_ref = f"{repository}/.github/workflows/deploy.yml@{ref}"
        sub = (
            f"repo:{repository}:environment:{environment}"
            if environment
            else f"repo:{repository}:ref:{ref}"
        )
        claims: dict[str, Any] = {
            "sub": sub,
            "repository": repository,
            "repository_owner": owner,
            "repository_id": "700001",
            "repository_owner_id": "800001",
            "repository_visibility": "private",
            "ref": ref,
            "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
            "ref_protected": "true",
            "sha": secrets.token_hex(20),
            "actor": actor,
            "actor_id": "900001",
            "run_id": str(secrets.randbelow(10**10)),
            "run_number": "7",
            "run_attempt": "1",
            "workflow": "deploy",
            "workflow_ref": workflow_ref,
            "job_workflow_ref": workflow_ref,
            "event_name": "push",
            "runner_environment": "github-hosted",
            "environment": environment,
        }
        claims.update(extra)
        return claims

    def gitlab_claims(
        self,
        *,
        project_path: str = "acme/ehr-api",
        ref: str = "main",
        ref_type: str = "branch",
        ref_protected: bool = True,
        user_login: str = "alice",
        environment: str | None = "production",
        pipeline_source: str = "push",
        job_project_path: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """GitLab ID-token claim names and shapes (strings where GitLab sends strings).

        ``job_project_path`` defaults to ``project_path``; give the parent's path
        with a fork's ``project_path`` to mimic a fork's merge-request pipeline run
        in the parent (GitLab >= 18.2.2 / 18.4).
        """
        namespace = project_path.rsplit("/", 1)[0]
        job_project = job_project_path or project_path
        sha = secrets.token_hex(20)
        host = self.issuer.split("://", 1)[-1]
        claims: dict[str, Any] = {
            "sub": f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}",
            "namespace_id": "72",
            "namespace_path": namespace,
            "project_id": "20",
            "project_path": project_path,
            "job_project_id": "20" if job_project == project_path else "21",
            "job_project_path": job_project,
            "job_namespace_id": "72",
            "job_namespace_path": job_project.rsplit("/", 1)[0],
            "user_id": "1",
            "user_login": user_login,
            "user_email": f"{user_login}@example.com",
            "user_access_level": "developer",
            "pipeline_id": str(secrets.randbelow(10**8)),
            "pipeline_source": pipeline_source,
            "job_id": str(secrets.randbelow(10**9)),
            "ref": ref,
            "ref_type": ref_type,
            "ref_path": f"refs/{'heads' if ref_type == 'branch' else 'tags'}/{ref}",
            "ref_protected": "true" if ref_protected else "false",
            "runner_id": 1,
            "runner_environment": "self-hosted",
            "sha": sha,
            "project_visibility": "private",
            "ci_config_ref_uri": f"{host}/{project_path}//.gitlab-ci.yml@refs/heads/{ref}",
            "ci_config_sha": sha,
        }
        if environment:
            claims.update(
                environment=environment,
                environment_protected="true",
                deployment_tier="production",
                environment_action="start",
            )
        claims.update(extra)
        return claims

    # -- tokens ------------------------------------------------------------------------

    def claims(
        self, *, audience: str = AUDIENCE, lifetime_s: int = 300, **claims: Any
    ) -> dict[str, Any]:
        """The payload :meth:`token` signs: defaults, then ``claims`` (None removes one)."""
        now = int(time.time())
        base = self.gitlab_claims() if self.style == "gitlab" else self.github_claims()
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "jti": str(uuid.uuid4()),
            **base,
        }
        payload.update(claims)
        return {k: v for k, v in payload.items() if v is not None}

    def token(
        self,
        *,
        audience: str = AUDIENCE,
        lifetime_s: int = 300,
        alg: str = "RS256",
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A real signed token (RS256 with the RSA key, ES256 with the EC key)."""
        pair = self._keys[-1]
        if alg.startswith(("RS", "PS")):
            key: Any = pair.rsa
            default_kid = pair.kid
        elif alg.startswith("ES"):
            key = pair.ec
            default_kid = pair.ec_kid
        else:
            raise ValueError(f"OidcIssuer.token signs RS*/PS*/ES* only, not {alg!r}")
        header: dict[str, Any] = {"kid": kid or default_kid, "typ": "JWT"}
        header.update(headers or {})
        payload = self.claims(audience=audience, lifetime_s=lifetime_s, **claims)
        return jwt.encode(payload, key, algorithm=alg, headers=header)

    def forge_with_other_key(self, *, alg: str = "RS256", **claims: Any) -> str:
        """A token signed by a fresh key nobody trusts, naming the current kid."""
        other = _KeyPair("other")
        key: Any = other.rsa if alg.startswith(("RS", "PS")) else other.ec
        kid = self.kid if alg.startswith(("RS", "PS")) else self._keys[-1].ec_kid
        return jwt.encode(self.claims(**claims), key, algorithm=alg, headers={"kid": kid})

    def forge_hs256_with_public_key(self, **claims: Any) -> str:
        """The classic attack: HS256 with the issuer's RSA public key (PEM) as the secret."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{_json_b64(header)}.{_json_b64(self.claims(**claims))}"
        secret = self._keys[-1].rsa_public_pem()
        signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"

    def unsigned_token(self, **claims: Any) -> str:
        """``alg: none`` with an empty signature."""
        header = {"alg": "none", "typ": "JWT", "kid": self.kid}
        return f"{_json_b64(header)}.{_json_b64(self.claims(**claims))}."
