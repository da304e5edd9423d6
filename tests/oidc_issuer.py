"""The loopback OIDC issuer, now at home in runner.demo.issuer (the demo uses it
too); re-exported here so the tests' ``from oidc_issuer import ...`` stands."""

from runner.demo.issuer import AUDIENCE, OidcIssuer

__all__ = ["AUDIENCE", "OidcIssuer"]
