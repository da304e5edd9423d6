"""Masking on one proxy connection: what the relay (runner/gateway/proxy/relay.py)
calls when a session's role is masked.

The relay keeps ``row_mask`` (the current result's RowMask; None: its rows go by
untouched) and calls this object at a RowDescription (``described``), at
CommandComplete (``complete``: the outcome gets the masked columns), at an
ErrorResponse (``scrub_error``) and for NoticeResponse, CopyOutResponse, CopyData and
PortalSuspended (``message``). Between results the mask is ``BLIND`` (every column
NULL): rows the gateway has no description for (an Execute without a Describe, of
a statement described earlier) are never relayed as they are.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from runner.gateway import wire
from runner.gateway.model import Session, StatementDecision
from runner.gateway.proxy.pending import (
    K_DESCRIBE,
    K_EXECUTE,
    K_QUERY,
    K_SYNC,
    Bookkeeping,
    Portal,
    Prepared,
)

from .engine import DatabaseMasking, MaskingEngine, is_unmasked, masked_columns_json
from .plan import parse_row_description
from .rewrite import Action, BlindMask, CopyMask, RowMask, detector_action, scrub_fields

if TYPE_CHECKING:
    from runner.gateway.proxy.results import ServerToClient as Relay

BLIND = BlindMask()
_DDL = ("CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE", "SECURITY")
# What an error text echoes of a value (not SQL: the server's own message text).
_ECHOES = (
    re.compile(r'(: )"(.*)"$', re.S),  # invalid input syntax for type integer: "..."
    re.compile(r"(\)=\()(.*)(\))", re.S),  # Key (ssn)=(...) already exists.
    re.compile(r"(Failing row contains \()(.*)(\))", re.S),
)


def _redact_echo(match: re.Match[str]) -> str:
    return match.group(1) + "[REDACTED]" + (match.group(3) if match.lastindex == 3 else "")


def open_masker(backend: Any, session: Session | None) -> ConnectionMasker | None:
    """The connection's masker, when the backend masks this session's results."""
    engine = getattr(backend, "masking", None)
    if session is None or not isinstance(engine, MaskingEngine) or not engine.masks(session):
        return None
    return ConnectionMasker(engine, session)


class ConnectionMasker:
    def __init__(self, engine: MaskingEngine, session: Session) -> None:
        self.engine = engine
        self.database = session.database
        self.copy: CopyMask | None = None
        self._error_act: Action | None = None
        self._error_view: DatabaseMasking | None = None

    @property
    def view(self) -> DatabaseMasking:
        return self.engine.database(self.database)

    # the client side -----------------------------------------------------------------------

    def described_target(self, relay: Bookkeeping, body: bytes) -> Prepared | None:
        target, name = wire.parse_target(body)
        if target == ord("P"):
            return relay.portals.get(name)
        return relay.statements.get(name)

    # the server side -----------------------------------------------------------------------

    def _statement(self, relay: Relay) -> StatementDecision | None:
        """The decision of the statement whose result is starting (None: not known)."""
        pending = relay.pending
        if not pending:
            return None
        head = pending[0]
        if head.kind == K_QUERY:
            index = len(head.results)
            decisions = head.decisions
            return decisions[index] if index < len(decisions) else None
        if head.kind == K_DESCRIBE:
            info = head.info
            if info is not None and len(info.decisions) == 1:
                return info.decisions[0]
            for entry in pending:  # the Execute that follows, before its Sync
                if entry.kind == K_SYNC:
                    break
                if entry.kind == K_EXECUTE and len(entry.decisions) == 1:
                    return entry.decisions[0]
            return None
        if head.kind == K_EXECUTE and len(head.decisions) == 1:
            return head.decisions[0]
        return None

    def described(self, relay: Relay, data: bytes, start: int, end: int) -> None:
        pending = relay.pending
        if pending and pending[0].kind == K_DESCRIBE and not isinstance(pending[0].info, Portal):
            # A statement's description (Describe S): the rows of a later Execute may be
            # of another portal by then, in formats it does not say; they come blind.
            relay.row_mask = BLIND
            return
        decision = self._statement(relay)
        if decision is not None and is_unmasked(decision):
            relay.row_mask = None
            return
        fields = parse_row_description(data[start:end], relay.codec)
        view = self.view
        mask, unknown = view.row_mask(
            fields, None if decision is None else decision.text, relay.codec
        )
        if unknown:
            self.engine.refresh_soon(self.database)
        relay.row_mask = mask

    def complete(self, relay: Relay, data: bytes, start: int, end: int) -> None:
        """CommandComplete: the outcome records what was masked; the next result starts blind."""
        mask = relay.row_mask
        copy = self.copy
        relay.row_mask = BLIND
        self.copy = None
        head = relay.pending[0] if relay.pending else None
        before = len(relay.batch)
        results = None if head is None or head.kind != K_QUERY else len(head.results)
        relay._on_complete(data, start, end)
        tag = data[start : end - 1].decode("utf-8", "replace")
        if tag.split(" ", 1)[0].upper() in _DDL:
            self.engine.refresh_soon(self.database)
        if isinstance(mask, BlindMask):
            mask = None
        masked = masked_columns_json(mask, copy)
        if not masked or head is None:
            return
        if head.kind == K_QUERY and results is not None and len(head.results) > results:
            head.results[-1] = head.results[-1]._replace(masked=masked)
        elif head.kind == K_EXECUTE:
            batch = relay.batch
            for i in range(before, len(batch)):
                seq, outcome = batch[i]
                batch[i] = (seq, outcome._replace(masked=masked))

    def scrub_error(self, relay: Relay, body: bytes) -> bytes | None:
        """An ErrorResponse with the values it echoes masked (detectors, and the
        quoted value of a cast, key or check failure); None: unchanged."""
        relay.row_mask = BLIND
        self.copy = None
        new = scrub_fields(body, self._scrubber())
        return None if new is None else wire.message(wire.ERROR_RESPONSE, new)

    def _scrubber(self) -> Action:
        view = self.view
        if self._error_act is None or self._error_view is not view:
            self._error_view = view
            detect = (
                detector_action(view.detectors, "utf-8", prefilter=view.config.mrn is None)
                if view.detectors
                else None
            )

            def act(value: bytes) -> bytes | None:
                text = value.decode("utf-8", "replace")
                for pattern in _ECHOES:
                    text = pattern.sub(
                        lambda m: (
                            m.group(1) + "[REDACTED]" + (m.group(3) if m.lastindex == 3 else "")
                        ),
                        text,
                    )
                out = text.encode("utf-8")
                return out if detect is None else detect(out)

            self._error_act = act
        return self._error_act

    def message(self, relay: Relay, kind: int, body: bytes) -> bytes | None:
        """NoticeResponse, CopyOutResponse, CopyData, PortalSuspended: the bytes to send
        instead (b"": nothing), or None to send the message as it is."""
        if kind == wire.NOTICE_RESPONSE:
            new = scrub_fields(body, self._scrubber())
            return None if new is None else wire.message(wire.NOTICE_RESPONSE, new)
        if kind == wire.PORTAL_SUSPENDED:
            relay.row_mask = BLIND  # the next Execute's rows come with no description
            return None
        if kind == wire.COPY_OUT_RESPONSE:
            self.copy = self._copy_mask(relay, body)
            return None
        if kind == wire.COPY_DATA and self.copy is not None:
            line = self.copy.line(body)
            return b"" if line is None else wire.message(wire.COPY_DATA, line)
        return None

    def _copy_mask(self, relay: Relay, body: bytes) -> CopyMask | None:
        decision = self._statement(relay)
        if decision is not None and is_unmasked(decision):
            return None
        view = self.view
        if decision is None:
            return CopyMask({}, [], "drop")
        copy = view.copy_columns(decision.text)
        if copy is None:
            return CopyMask({}, [], "drop") if view.any_masked else None
        return view.copy_mask(copy, binary=body[:1] == b"\x01", sql=decision.text)


def row_mask_type() -> type[RowMask]:
    return RowMask
