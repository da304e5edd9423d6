"""The optional C hot path (fast lane, journal append, SHA-256, literal masks).

``loader`` imports the extension (``_speedups``, built from the C sources here)
and hands it Python's values (``contract``) before its first use; ``reference``
holds the Python twins of the C readers that have none elsewhere. Importing
this package imports nothing else.
"""
