"""The gateway: the only holder of the database credential and the only path to it.

OIDC token exchange (``oidc``), sessions and the audit chain (``store``,
``auditlog``), the PostgreSQL wire-protocol proxy (``pgproxy``, ``upstream``,
``wire``), per-statement policy (``policy``) and the HTTP API (``app``).
"""
