"""The gateway's HTTP API (FastAPI). OpenAPI is published at ``/openapi.json``.

Errors are JSON ``{error, detail}`` with a precise status code and never a
stack trace. Session endpoints authenticate with the session secret as a
bearer token (``Authorization: Bearer <secret>``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from runner import __version__
from runner.gateway.auditlog import merge_records
from runner.gateway.model import Session, utcnow
from runner.gateway.service import ExchangeRefused, GatewayService


class SessionRequest(BaseModel):
    token: str = Field(description="The CI job's OIDC ID token (a JWT).")
    database: str = Field(description="A database name from the gateway's configuration.")


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


class ErrorBody(BaseModel):
    error: str
    detail: str


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    404: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


def create_app(service: GatewayService) -> FastAPI:
    app = FastAPI(
        title="Signoff gateway",
        version=__version__,
        description="OIDC token exchange, short-lived PostgreSQL sessions, audit.",
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        detail = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request body"
        return JSONResponse({"error": "invalid-request", "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return JSONResponse(
            {"error": error, "detail": str(exc.detail)}, status_code=exc.status_code
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
            exchanged = await asyncio.to_thread(service.exchange, body.token, body.database)
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
                port=service.config.pg_port,
                dbname=session.database,
                user=session.id,
            ),
        )

    async def authenticated(request: Request, session_id: str, *, allow_ended: bool) -> Session:
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
        return {"session_id": session_id, "records": merge_records(entries)}

    @app.post("/v1/sessions/{session_id}/approvals", status_code=501, responses=_ERRORS)
    async def approvals(session_id: str, request: Request) -> JSONResponse:
        await authenticated(request, session_id, allow_ended=False)
        return JSONResponse(
            {
                "error": "not-implemented",
                "detail": "approvals from the code host are not implemented yet; "
                "use `signoff gateway grant`",
            },
            status_code=501,
        )

    @app.get("/v1/sessions/{session_id}/attestation", status_code=501, responses=_ERRORS)
    async def attestation(session_id: str, request: Request) -> JSONResponse:
        await authenticated(request, session_id, allow_ended=True)
        return JSONResponse(
            {"error": "not-implemented", "detail": "attestations are not implemented yet"},
            status_code=501,
        )

    return app
