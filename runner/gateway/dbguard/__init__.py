"""The server-side guard: the database itself refuses a destructive effect the
gateway did not mark as approved (see ``sql`` for the objects it installs).

No reading of SQL text sees everything a database will do (a function written before
the gateway existed, a body in C, a trigger), so a second layer sits in the database:

* ``install`` — ``signoff gateway install-guard`` / ``uninstall-guard``, and the
  status (installed, version stamp, the upstream role's SUPERUSER / BYPASSRLS) that
  ``check-config`` and ``serve`` report (``status``);
* ``marker`` — the gateway's admin connection that sets and clears marks;
* ``link`` — one proxied connection's marks, the guard's notices and the outcomes'
  ``nested`` list (which statements need a mark is decided there);
* ``testing`` — the test-only switch that takes the analysis out (both
  ``SIGNOFF_TESTING=1`` and ``SIGNOFF_TEST_GUARD_ONLY=1`` in the gateway's own
  environment; never reachable by a runner), so the guard alone is tested.

``runner/gateway/policy/guard.py`` is unrelated (the standard_conforming_strings guard).
"""

from runner.gateway.dbguard.sql import GUARD_VERSION, SCHEMA

__all__ = ["GUARD_VERSION", "SCHEMA"]
