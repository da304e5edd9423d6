"""Approvals on the pull/merge request: what counts, read from the code host.

``policy`` decides (pure), ``comment`` writes the sticky plan comment's text
(pure), ``github`` / ``gitlab`` speak to the code hosts; the gateway calls them
with its own credential, never trusting what the runner says it saw.
"""
