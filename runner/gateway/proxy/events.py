"""Connection events for the audit log (authenticated, auth-failed, cancel, closed, ...)."""

from __future__ import annotations

import contextlib
from typing import Any

from runner.gateway.model import ProxyBackend, Session


async def record_event(
    backend: ProxyBackend, session: Session | None, event: str, **data: Any
) -> None:
    """Record a connection event; a failed write is the writer's to log, never the
    connection's to fail on."""
    with contextlib.suppress(Exception):
        await backend.record_event(session, event, **data)
