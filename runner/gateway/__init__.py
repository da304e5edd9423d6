"""The gateway: the only holder of the database credential and the only path to it.

OIDC token exchange (``oidc``), sessions and state (``store``; the audit format
is ``runner.audit``), the PostgreSQL wire-protocol proxy (``proxy``, ``upstream``,
``wire``), per-statement policy (``policy``), plans and approvals (``review``) and
the HTTP API (``app``). ARCHITECTURE.md at the root follows one statement through.
"""
