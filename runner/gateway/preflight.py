"""Everything the gateway reads at start, read once before it reports or serves.

``check-config`` and ``serve`` both call :func:`preflight`: a configuration is
valid only when every database password source answers, the signing key is a
readable Ed25519 private key, the TLS certificate and key load together, and
each code host's token is there. Each problem is one line naming the key and the
fix; no secret is ever part of one.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from runner.errors import SignoffError
from runner.gateway.config import GatewayConfig
from runner.gateway.dbguard.testing import switch_problem


def preflight(config: GatewayConfig) -> list[str]:
    """The problems that would stop the gateway, one line each (empty: none)."""
    problems: list[str] = []
    for database in config.databases.values():
        _check(problems, database.password)
        _check(problems, database.guard_upstream)
    switch = switch_problem()  # the test suite's switch, set where it must not be
    if switch is not None:
        problems.append(switch)
    for host in config.code_hosts.values():
        _check(problems, host.token)
    if config.masking.enabled and config.masking.uses_pseudonyms:
        _check(problems, config.masking.secret)  # the pseudonyms' key ([masking])
    if config.signing_key is not None:
        problem = _signing_key_problem(config)
        if problem:
            problems.append(problem)
    if config.tls_cert is not None and config.tls_key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                str(config.tls_cert), str(config.tls_key)
            )
        except (OSError, ssl.SSLError) as error:
            reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
            problems.append(
                f"listen.tls_cert/tls_key ({config.tls_cert}, {config.tls_key}) do not load "
                f"({reason}); give a PEM certificate and its private key"
            )
    return problems


def _check(problems: list[str], read: Callable[[], object]) -> None:
    try:
        read()
    except SignoffError as error:
        problems.append(str(error))


def _signing_key_problem(config: GatewayConfig) -> str | None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = config.signing_key
    assert path is not None
    fix = "make one with `signoff gateway keygen --out PATH`"
    try:
        data = path.read_bytes()
    except OSError as error:
        return f"gateway.signing_key {path}: cannot read it ({error.strerror}); {fix}"
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        return f"gateway.signing_key {path}: not an unencrypted PEM private key; {fix}"
    if not isinstance(key, Ed25519PrivateKey):
        return f"gateway.signing_key {path}: a {type(key).__name__}, not an Ed25519 key; {fix}"
    return None
