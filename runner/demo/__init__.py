"""``signoff demo``: the whole flow in one process, on loopback, with no server,
cloud account or network.

* :mod:`runner.demo.issuer`: a loopback OIDC issuer signing real tokens;
* :mod:`runner.demo.token_endpoint`: GitHub Actions' ID-token request endpoint;
* :mod:`runner.demo.codehost`: a loopback GitHub and GitLab (the REST shapes
  PyGithub and python-gitlab use);
* :mod:`runner.demo.run`: the demo itself (``run_demo``).

The tests use the same loopback servers (tests/oidc_issuer.py, tests/codehost.py
re-export them). Nothing is imported here, so importing one part does not load
the others.
"""
