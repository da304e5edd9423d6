"""Signoff: attributed, approved PostgreSQL migrations from CI."""

__version__ = "0.1.0"
