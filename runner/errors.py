"""Errors the CLI turns into one line and exit status 2.

Every error names the thing that is wrong and the fix, so a CI log line is
enough to act on; tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations


class SignoffError(Exception):
    """A problem with the user's input, configuration or environment."""

    exit_code = 2


class ConfigError(SignoffError):
    """signoff.toml / [tool.signoff] is invalid."""


class SourceError(SignoffError):
    """The alembic project cannot be read (no alembic.ini, broken revision, ...)."""


class DatabaseError(SignoffError):
    """The database cannot be reached or queried."""
