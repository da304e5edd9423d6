"""Moved to runner._native.loader; this name stays until every importer has moved."""

from runner._native.loader import Native, native

__all__ = ["Native", "native"]
