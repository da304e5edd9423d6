"""The audit format: written by the gateway, read and verified by anyone, offline.

``chain`` (entries, canonical JSON, the hash rule, chaining; its test vectors in
``chain_vectors.json``), ``entries`` (the data of the entries the gateway writes),
``verify`` (``verify_chain``), ``records`` (one record per statement) and
``writer`` (the gateway's group-commit ``AuditWriter``). Nothing but ``writer``
needs the gateway; this package imports no module of its own on import.
"""
