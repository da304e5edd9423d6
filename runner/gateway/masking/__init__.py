"""PHI masking in the data path: the policy (``config``), value detectors, the
lineage of computed columns, the catalog, the RowMask of each result (``plan``,
``rewrite``), the service's engine and each connection's masker (``relayside``).

Nothing here is imported by the relay unless a session's role is masked, beyond the
two names the relay holds (``open_masker``, ``BLIND``)."""
