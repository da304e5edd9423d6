"""GitHub Actions' ``ACTIONS_ID_TOKEN_REQUEST_URL`` on loopback: every GET with the
request token mints a fresh ID token, with the claims of the job running now,
from a loopback issuer (runner.demo.issuer). What runner.identity asks of a real
runner, answered on 127.0.0.1 only."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

__all__ = ["TokenEndpoint", "TokenMinter"]


class TokenMinter(Protocol):
    """What mints the tokens: an OidcIssuer, or a test's gateway wrapping one."""

    def token(self, **claims: Any) -> str: ...


class TokenEndpoint:
    """A context manager serving the endpoint on ``127.0.0.1:<free port>``; set
    ``claims`` to the job's claims before each job (``minted`` counts the tokens)."""

    REQUEST_TOKEN = "actions-request-token-for-tests"

    def __init__(self, gateway: TokenMinter) -> None:
        self.gateway = gateway
        self.claims: dict[str, Any] = {}
        self.minted = 0
        self.lifetime_s = 300
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TokenEndpoint:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != f"bearer {owner.REQUEST_TOKEN}":
                    self.send_response(401)
                    self.end_headers()
                    return
                owner.minted += 1
                token = owner.gateway.token(lifetime_s=owner.lifetime_s, **owner.claims)
                body = json.dumps({"count": 1, "value": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll: shutdown() waits for the loop to notice (0.5 s by default).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="token-endpoint",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token?api-version=2.0"
