"""The runner's side of the gateway's HTTP API (``/openapi.json`` on the gateway).

The runner is untrusted: everything it sends here is checked by the gateway, and
everything that matters (the plan comment a reviewer reads, the approval, the
grants) is decided there. This module only speaks the API: one method per
endpoint, JSON in and out, and one exception, :class:`GatewayError`, whose
message is one line naming the endpoint and what the gateway said. The session
secret is sent only as a bearer token and never appears in a message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from runner.errors import SignoffError

_MAX_DETAIL = 300  # what an error repeats of the gateway's answer


class GatewayError(SignoffError):
    """The gateway refused or could not be reached. ``status`` is the HTTP status
    (0: no answer), ``error`` the gateway's error code."""

    def __init__(self, message: str, *, status: int = 0, error: str = "unreachable") -> None:
        super().__init__(message)
        self.status = status
        self.error = error


@dataclass(frozen=True)
class GatewaySession:
    """A short-lived session: its id, its secret (the PostgreSQL password) and where
    to connect. ``principal`` is what the gateway verified from the OIDC token."""

    session_id: str
    secret: str
    expires_at: str
    principal: Mapping[str, Any]
    role: str
    host: str
    port: int
    dbname: str

    def conninfo(self, *, application_name: str = "signoff") -> str:
        """A libpq URL for the gateway's PostgreSQL port (user = the session id)."""
        return (
            f"postgresql://{quote(self.session_id, safe='')}:{quote(self.secret, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.dbname, safe='')}"
            f"?application_name={quote(application_name, safe='')}"
        )

    def __repr__(self) -> str:  # never the secret
        return f"GatewaySession({self.session_id!r}, role={self.role!r}, db={self.dbname!r})"


class GatewayClient:
    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise SignoffError(
                f"gateway URL {base_url!r} is not an http(s) URL; pass --gateway-url "
                "https://gateway.example"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    # -- endpoints ---------------------------------------------------------------------

    def open_session(
        self, token: str, database: str, *, ttl_s: float | None = None
    ) -> GatewaySession:
        request: dict[str, Any] = {"token": token, "database": database}
        if ttl_s is not None:
            request["ttl_seconds"] = max(60, int(ttl_s))
        body = self._call("POST", "/v1/sessions", request)
        pg = body.get("pg") or {}
        try:
            return GatewaySession(
                session_id=str(body["session_id"]),
                secret=str(body["secret"]),
                expires_at=str(body["expires_at"]),
                principal=dict(body.get("principal") or {}),
                role=str(body.get("role", "")),
                host=str(pg["host"]),
                port=int(pg["port"]),
                dbname=str(pg["dbname"]),
            )
        except (KeyError, TypeError, ValueError):
            raise GatewayError(
                "POST /v1/sessions: the gateway's answer has no session; is the gateway URL right?"
            ) from None

    def submit_plan(
        self, session: GatewaySession, plan: Mapping[str, Any], review: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/v1/sessions/{quote(session.session_id, safe='')}/plans",
            {"plan": plan, "review": review},
            secret=session.secret,
        )

    def plan_status(self, session: GatewaySession, plan_hash: str) -> dict[str, Any]:
        return self._call(
            "GET",
            f"/v1/sessions/{quote(session.session_id, safe='')}/plans/{quote(plan_hash, safe='')}",
            secret=session.secret,
        )

    def approve(
        self, session: GatewaySession, plan_hash: str, evidence: list[str]
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/v1/sessions/{quote(session.session_id, safe='')}/approvals",
            {"plan_hash": plan_hash, "evidence": evidence},
            secret=session.secret,
        )

    def attestation(self, session: GatewaySession) -> dict[str, Any]:
        return self._call(
            "GET",
            f"/v1/sessions/{quote(session.session_id, safe='')}/attestation",
            secret=session.secret,
        )

    def report(self, session: GatewaySession) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/v1/sessions/{quote(session.session_id, safe='')}/report",
            secret=session.secret,
        )

    def audit(self, session: GatewaySession) -> dict[str, Any]:
        return self._call(
            "GET", f"/v1/sessions/{quote(session.session_id, safe='')}/audit", secret=session.secret
        )

    def close_session(self, session: GatewaySession) -> None:
        self._call(
            "DELETE", f"/v1/sessions/{quote(session.session_id, safe='')}", secret=session.secret
        )

    # -- transport ---------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        *,
        secret: str | None = None,
    ) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if secret is not None:
            request.add_header("Authorization", f"Bearer {secret}")
        where = f"{method} {path.split('?')[0]}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise _refusal(where, error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise GatewayError(
                f"{where}: cannot reach the gateway at {self.base_url} ({reason}); "
                "check --gateway-url and that the gateway is running"
            ) from None
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise GatewayError(f"{where}: the gateway's answer is not JSON") from None
        return body if isinstance(body, dict) else {"value": body}


def _refusal(where: str, error: urllib.error.HTTPError) -> GatewayError:
    code, detail = "http-error", error.reason
    try:
        body = json.loads(error.read() or b"{}")
        if isinstance(body, dict):
            code = str(body.get("error", code))
            detail = str(body.get("detail", detail))
    except ValueError:
        pass
    detail = " ".join(str(detail).split())[:_MAX_DETAIL]
    return GatewayError(
        f"{where}: the gateway answered {error.code} {code}: {detail}",
        status=error.code,
        error=code,
    )
