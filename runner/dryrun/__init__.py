"""Dry-run: the plan applied to a scratch database exactly as apply will apply it.

* :mod:`runner.dryrun.server`: the embedded PostgreSQL (pgserver) and its supervision;
* :mod:`runner.dryrun.scratch`: scratch databases, created and always dropped;
* :mod:`runner.dryrun.migrate`: alembic online to a revision (the target's current one);
* :mod:`runner.dryrun.facts`: what is read from a database (server version,
  alembic_version, column types), for the planner, dry-run and the gateway;
* :mod:`runner.dryrun.executor`: the one executor of a plan's statements, used by
  dry-run and by :mod:`runner.apply`.

``runner.command.dry_run`` puts them together. Nothing is imported here, so
importing one part does not load the others.
"""
