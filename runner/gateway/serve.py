"""Run the gateway: the PostgreSQL listener and the HTTP API on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import uvicorn

from runner.errors import SignoffError
from runner.gateway.app import create_app
from runner.gateway.config import GatewayConfig
from runner.gateway.dbguard.link import attach
from runner.gateway.dbguard.status import guard_markers, log_guards
from runner.gateway.dbguard.testing import SWITCH, GuardOnlyPolicy, guard_only, switch_problem
from runner.gateway.httpguard import BodyTimeout, guarded_protocol
from runner.gateway.model import utcnow
from runner.gateway.proxy import PgProxy, ProxyConfig
from runner.gateway.service import GatewayService
from runner.gateway.store import open_store

_log = logging.getLogger("signoff.gateway")


def _ssl_context(config: GatewayConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    return context


@dataclass
class RunningGateway:
    """Ports the gateway actually bound (configured port 0 picks a free one)."""

    http_port: int = 0
    pg_port: int = 0
    started: threading.Event = field(default_factory=threading.Event)
    service: GatewayService | None = None  # for the tests' look at its counters


async def serve(
    config: GatewayConfig,
    *,
    running: RunningGateway | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or, without one, until SIGINT or SIGTERM)."""
    if stop is None and threading.current_thread() is threading.main_thread():
        # Our own handlers, so a signal ends in the shutdown below (connections
        # closed and their ends recorded, the audit writer flushed): uvicorn
        # re-raises the signal it caught once it has stopped, which with the
        # default SIGTERM disposition would kill the process first.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    problem = switch_problem()
    if problem is not None:
        raise StartupError(problem)
    store = open_store(config.state_url)
    service = GatewayService(config, store)
    if guard_only():
        _log.warning(
            "%s: the gateway's analysis is OFF (every statement allowed unless a grant "
            "marks it): the test suite's switch, never for a real database",
            SWITCH,
        )
        service.policy = GuardOnlyPolicy.over(service.policy)
    # The markers each database's connections mark approved statements with (the
    # guard's status is logged once the gateway listens: a start-up error stays one line).
    markers = guard_markers(config)
    attach(service, markers)
    proxy = PgProxy(
        service,
        ProxyConfig(
            host=config.pg_host,
            port=config.pg_port,
            ssl_context=_ssl_context(config),
            allow_cleartext_on_loopback=config.allow_cleartext_on_loopback,
            startup_timeout=config.pg_startup_timeout.total_seconds(),
            max_connections=config.pg_max_connections,
        ),
    )
    http = uvicorn.Server(
        uvicorn.Config(
            BodyTimeout(create_app(service), config.http_body_timeout.total_seconds()),
            host=config.http_host,
            port=config.http_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=guarded_protocol(config.http_header_timeout.total_seconds()),
            limit_concurrency=config.http_max_connections,
        )
    )
    try:
        await proxy.start()
    except OSError as error:
        service.close()
        store.close()
        raise _bind_error("listen.pg", config.pg_host, config.pg_port, error) from None
    service.pg_port = proxy.port  # what sessions are told (the bound port, for :0)
    try:
        # Bound here, not by uvicorn, so a taken port is one line (uvicorn logs it
        # and exits the process from inside its task).
        http_socket = socket.create_server((config.http_host, config.http_port), backlog=2048)
    except OSError as error:
        await proxy.stop()
        service.close()
        store.close()
        raise _bind_error("listen.http", config.http_host, config.http_port, error) from None
    http_task = asyncio.create_task(http.serve(sockets=[http_socket]))
    try:
        while not http.started:
            if http_task.done():
                await http_task  # raises what stopped it (port in use, ...)
                return
            await asyncio.sleep(0.01)
        _log.info(
            "listening: http://%s:%d postgresql://%s:%d",
            config.http_host,
            http_socket.getsockname()[1],
            config.pg_host,
            proxy.port,
        )
        await log_guards(config)
        sweeper = (
            asyncio.create_task(_sweep_archive(service)) if config.archive is not None else None
        )
        if running is not None:
            running.pg_port = proxy.port
            running.service = service
            running.http_port = http.servers[0].sockets[0].getsockname()[1]
            running.started.set()
        if stop is not None:
            stop_task = asyncio.create_task(stop.wait())
            await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            http.should_exit = True
            stop_task.cancel()
        await http_task
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
    finally:
        await proxy.stop()
        for marker in markers.values():
            with contextlib.suppress(Exception):
                await marker.close()
        service.close()
        store.close()
        stats = service.writer.stats
        _log.info(
            "audit log: %d entries in %d commits (%d appends; %d entries from the fast lane)",
            stats.entries,
            stats.batches,
            stats.requests,
            stats.lane_entries,
        )


SWEEP_EVERY_S = 60.0
SWEEP_LOOKBACK = timedelta(days=7)  # at start: sessions that ended while it was down


async def _sweep_archive(service: GatewayService) -> None:
    """Every minute, archive the sessions that expired without being closed."""
    after = utcnow() - SWEEP_LOOKBACK
    while True:
        until = utcnow()
        try:
            await asyncio.to_thread(service.sweep_archive, after, until)
            after = until
        except Exception as error:  # a store or archive that is down: try again later
            _log.error("archive sweep failed: %s", error)
        await asyncio.sleep(SWEEP_EVERY_S)


class StartupError(SignoffError):
    """The gateway cannot start (a port is taken, a file is unreadable): one line."""


def _bind_error(key: str, host: str, port: int, error: OSError) -> StartupError:
    reason = os.strerror(error.errno) if error.errno else str(error)
    return StartupError(
        f"{key} {host}:{port}: cannot listen ({reason}); stop what holds the port or "
        f"change {key} in gateway.toml"
    )


def run(config: GatewayConfig) -> None:
    """``signoff gateway serve``: uvloop where available, until SIGINT/SIGTERM."""
    runner_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        runner_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on CPython/Linux
        pass
    with asyncio.Runner(loop_factory=runner_factory) as runner:
        runner.run(serve(config))


class GatewayThread:
    """The whole gateway in a background thread, for tests and benchmarks."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.running = RunningGateway()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="signoff-gateway", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self.config, running=self.running, stop=self._stop)

        try:
            asyncio.run(main())
        except BaseException as error:  # surfaced by start()
            self._error = error
            self.running.started.set()

    def start(self, timeout: float = 30.0) -> GatewayThread:
        self._thread.start()
        if not self.running.started.wait(timeout) or self._error is not None:
            raise RuntimeError(f"gateway did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
