"""The gateway's PostgreSQL listener: protocol 3.0 in front, the held credential behind.

Split by object (each module's docstring says more):

* ``listener``: ``PgProxy`` (the listening socket, its connections) and where a
  CancelRequest is routed; ``ProxyConfig``.
* ``connection``: one client connection, the coordinator of the rest: its startup
  (``stream`` buffers the client socket until then), then its relay, then its close.
* ``auth``: SCRAM-SHA-256 against the session's verifier (or the secret in cleartext
  on TLS or loopback), and the startup parameters that may pass to the upstream.
* ``relay`` (over ``state``): the relay state machine, client -> server and
  server -> client; ``pending``: what each forwarded message expects back, the
  prepared statements and portals, and the gateway's refusals.
* ``lane``: the glue to the C fast lane (runner/_native/_lane.c), behind ``LaneHost``.

Also:

* A statement approved at its Parse (a grant was consumed) runs once, however
  often it is bound and executed.
* The fast-path FunctionCall message is refused (it carries no SQL to decide).
* Startup parameters pass to the upstream only from an allowlist of
  presentation and per-session limit settings (``options`` too); anything else,
  ``replication`` included, is refused.
* A client that disconnects mid-statement gets its upstream statement cancelled
  (a busy backend would not notice the closed socket) and the outcome
  ``connection-lost``.
"""

from runner.gateway.proxy.listener import PgProxy, ProxyConfig

__all__ = ["PgProxy", "ProxyConfig"]
