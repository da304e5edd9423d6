"""The gateway's HTTP API (FastAPI). OpenAPI is published at ``/openapi.json``.

Errors are JSON ``{error, detail}`` with a precise status code and never a
stack trace. Session endpoints authenticate with the session secret as a
bearer token (``Authorization: Bearer <secret>``).
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from runner import __version__
from runner.audit.attestation import gateway_attestation, public_key_pem
from runner.audit.records import merge_records
from runner.gateway.model import Session, utcnow
from runner.gateway.review import ReviewRefused, ReviewTarget
from runner.gateway.service import ExchangeRefused, GatewayService
from runner.gateway.text import bounded, storable_text

_SESSION_ID = re.compile(r"so_[0-9a-f]{24}")
_MAX_DETAIL = 500


class SessionRequest(BaseModel):
    token: str = Field(description="The CI job's OIDC ID token (a JWT).", max_length=65536)
    database: str = Field(
        description="A database name from the gateway's configuration.",
        min_length=1,
        max_length=255,
    )
    ttl_seconds: int | None = Field(
        default=None,
        ge=60,
        le=7 * 24 * 3600,
        description="How long the session should last (at most the gateway's max_session_ttl; "
        "default its session_ttl). A job that waits for an approval asks for the wait.",
    )


class PgEndpoint(BaseModel):
    host: str
    port: int
    dbname: str
    user: str


class SessionResponse(BaseModel):
    session_id: str
    secret: str = Field(description="Shown once; the PostgreSQL password of the session.")
    expires_at: str
    principal: dict[str, Any]
    role: str
    pg: PgEndpoint


class ReviewBody(BaseModel):
    platform: str = Field(description="github or gitlab")
    repository: str = Field(description="owner/name (GitHub) or group/project (GitLab)")
    number: int | None = Field(
        default=None,
        description="PR number or MR iid; omitted after merge: the gateway finds the merged one",
    )
    head_sha: str | None = Field(default=None, description="the PR/MR head commit planned")


class PlanRequest(BaseModel):
    plan: dict[str, Any] = Field(description="The plan as `signoff plan --format json` writes it.")
    review: ReviewBody | None = Field(
        default=None, description="Where it is reviewed; needed when a statement needs approval."
    )


class ApprovalRequest(BaseModel):
    plan_hash: str = Field(description="The plan's hash (64 hex) or its 12-hex short form.")
    evidence: list[str] = Field(
        default_factory=list, description="Comment ids or URLs to consider (default: all)."
    )


class ErrorBody(BaseModel):
    error: str
    detail: str


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A body that is not UTF-8 JSON."},
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    404: {"model": ErrorBody},
    422: {"model": ErrorBody},
}
_REVIEW_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    409: {"model": ErrorBody},
    502: {"model": ErrorBody},
}


def create_app(service: GatewayService) -> FastAPI:
    app = FastAPI(
        title="Signoff gateway",
        version=__version__,
        description="OIDC token exchange, short-lived PostgreSQL sessions, audit.",
        # No redirect to the slashed path: it would copy the client's Host header
        # into Location (an open redirect), and no client needs it.
        redirect_slashes=False,
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.error, "detail": bounded(exc.detail, _MAX_DETAIL)}, status_code=exc.status
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        detail = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request body"
        detail = bounded(storable_text(detail), _MAX_DETAIL)
        if request.url.path == "/v1/sessions":
            # A refused exchange is on the record whatever made it fail.
            await asyncio.to_thread(
                service.record_refusal, "exchange-refused", reason="invalid-request", detail=detail
            )
        return JSONResponse({"error": "invalid-request", "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = {400: "bad-request", 404: "not-found", 405: "method-not-allowed"}.get(
            exc.status_code, "http-error"
        )
        return JSONResponse(
            {"error": error, "detail": bounded(str(exc.detail), _MAX_DETAIL)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),  # 405's Allow
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"error": "internal", "detail": f"internal error ({type(exc).__name__})"},
            status_code=500,
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.post("/v1/sessions", status_code=201, responses=_ERRORS)
    async def create_session(body: SessionRequest) -> SessionResponse:
        try:
            ttl = None if body.ttl_seconds is None else timedelta(seconds=body.ttl_seconds)
            exchanged = await asyncio.to_thread(
                service.exchange, body.token, body.database, ttl=ttl
            )
        except ExchangeRefused as refused:
            raise ApiError(refused.status, refused.error, refused.detail) from None
        session = exchanged.session
        return SessionResponse(
            session_id=session.id,
            secret=exchanged.secret,
            expires_at=session.expires_at.isoformat(),
            principal=session.principal.to_json(),
            role=session.role,
            pg=PgEndpoint(
                host=service.config.public_host,
                port=service.pg_port,
                dbname=session.database,
                user=session.id,
            ),
        )

    async def authenticated(request: Request, session_id: str, *, allow_ended: bool) -> Session:
        if _SESSION_ID.fullmatch(session_id) is None:
            # Not a session id at all (a NUL, a megabyte): no store is asked.
            raise ApiError(401, "unauthenticated", "unknown session or wrong secret")
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise ApiError(
                401, "unauthenticated", "send the session secret as 'Authorization: Bearer …'"
            )
        session = await asyncio.to_thread(service.authenticate_http, session_id, secret.strip())
        if session is None:
            raise ApiError(401, "unauthenticated", "unknown session or wrong secret")
        why = session.usable(utcnow())
        if why is not None and not allow_ended:
            raise ApiError(403, "session-ended", why)
        return session

    @app.delete("/v1/sessions/{session_id}", status_code=204, responses=_ERRORS)
    async def revoke_session(session_id: str, request: Request) -> None:
        session = await authenticated(request, session_id, allow_ended=True)
        await asyncio.to_thread(service.revoke, session)

    @app.get("/v1/sessions/{session_id}/audit", responses=_ERRORS)
    async def session_audit(session_id: str, request: Request) -> dict[str, Any]:
        await authenticated(request, session_id, allow_ended=True)
        entries = await asyncio.to_thread(service.store.entries, session_id=session_id)
        # The chain entries as stored (what a bundle's session.jsonl holds and an
        # auditor re-hashes) and the merged records (what a person reads).
        return {
            "session_id": session_id,
            "records": merge_records(entries),
            "entries": [entry.to_json() for entry in entries],
        }

    async def reviewed(call: Any, *args: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await asyncio.to_thread(call, *args)
        except ReviewRefused as refused:
            raise ApiError(refused.status, refused.error, refused.detail) from None
        return result

    @app.post("/v1/sessions/{session_id}/plans", status_code=201, responses=_REVIEW_ERRORS)
    async def submit_plan(session_id: str, body: PlanRequest, request: Request) -> dict[str, Any]:
        """Submit a plan: the gateway analyses it again with its own rules and the
        session's role and, when a statement needs approval, writes the sticky plan
        comment on the PR/MR with its own code-host credential."""
        session = await authenticated(request, session_id, allow_ended=False)
        review = body.review
        try:
            target = None if review is None else ReviewTarget.from_json(review.model_dump())
        except ReviewRefused as refused:
            raise ApiError(refused.status, refused.error, refused.detail) from None
        return await reviewed(service.submit_plan, session, body.plan, target)

    @app.post("/v1/sessions/{session_id}/report", responses=_REVIEW_ERRORS)
    async def report(session_id: str, request: Request) -> dict[str, Any]:
        """What the session ran of the plan it submitted, from the gateway's audit
        records, written on the PR/MR as the gateway's status comment."""
        session = await authenticated(request, session_id, allow_ended=True)
        return await reviewed(service.report_plan, session)

    @app.get("/v1/sessions/{session_id}/plans/{plan_hash}", responses=_REVIEW_ERRORS)
    async def plan_state(session_id: str, plan_hash: str, request: Request) -> dict[str, Any]:
        """The plan's approval state, verified on the code host now; when approved,
        the grants for its statements are recorded for this session."""
        session = await authenticated(request, session_id, allow_ended=False)
        return await reviewed(service.plan_status, session, plan_hash, ())

    @app.post("/v1/sessions/{session_id}/approvals", responses=_REVIEW_ERRORS)
    async def approvals(session_id: str, body: ApprovalRequest, request: Request) -> dict[str, Any]:
        """Ask the gateway to verify an approval (optionally only the comments named
        in ``evidence``); the same answer as GET .../plans/{hash}."""
        session = await authenticated(request, session_id, allow_ended=False)
        return await reviewed(service.plan_status, session, body.plan_hash, tuple(body.evidence))

    @app.get(
        "/v1/sessions/{session_id}/attestation",
        responses={**_ERRORS, 503: {"model": ErrorBody}},
    )
    async def attestation(session_id: str, request: Request) -> dict[str, Any]:
        """The session's audit entries attested (in-toto Statement v1) in a DSSE
        envelope signed with the gateway's Ed25519 key."""
        session = await authenticated(request, session_id, allow_ended=True)
        key = service.signing_key
        if key is None:
            raise ApiError(
                503,
                "no-signing-key",
                "the gateway has no gateway.signing_key; its operator makes one with "
                "`signoff gateway keygen`",
            )
        # An awaited append: every entry before it is durable when the chain is read.
        await service.record_event(session, "attestation-requested")
        try:
            envelope: dict[str, Any] = await asyncio.to_thread(
                gateway_attestation, service.store, session_id, key
            )
        except ValueError as error:
            raise ApiError(404, "not-found", str(error)) from None
        return envelope

    @app.get(
        "/.well-known/signoff/attestation-key.pem",
        response_class=PlainTextResponse,
        responses={503: {"model": ErrorBody}},
    )
    async def attestation_key() -> PlainTextResponse:
        """The public key attestations verify with (PEM, SubjectPublicKeyInfo)."""
        if service.signing_key is None:
            raise ApiError(503, "no-signing-key", "the gateway has no gateway.signing_key")
        return PlainTextResponse(public_key_pem(service.signing_key))

    return app
