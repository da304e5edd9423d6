"""What a masked value becomes, by the rule's action.

* ``redact``: the rule's replacement text (``[REDACTED]``);
* ``keep_last``: every letter and digit but the last N becomes ``*``, separators stay
  (``123-45-6789`` -> ``***-**-6789``);
* ``keep_domain``: an e-mail's local part becomes ``***`` (``***@example.org``); a
  value without ``@`` is redacted;
* ``pseudonym``: ``ps_`` + the first 16 hex digits of HMAC-SHA256(key, value): the
  same value gives the same pseudonym in every table and session, so joins and
  GROUP BYs still line up, and without the key it cannot be reversed or recomputed;
* ``null``: SQL NULL.

Values of non-text types (and derived columns, whose text a keep_last could reveal
more of, e.g. reverse(ssn)) are not given a partial form: see plan.py.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from .config import MaskRule

# A function from the value's text to its replacement text (None: SQL NULL).
Replace = Callable[[str], str | None]


def keep_last(value: str, keep: int) -> str:
    out = list(value)
    seen = 0
    for i in range(len(out) - 1, -1, -1):
        if out[i].isalnum():
            seen += 1
            if seen > keep:
                out[i] = "*"
    # A value with no more than ``keep`` letters and digits would be shown whole.
    return "".join(out) if seen > keep else "*" * len(value)


def keep_domain(value: str, fallback: str) -> str:
    at = value.rfind("@")
    if at <= 0:
        return fallback
    return "***" + value[at:]


def pseudonym(key: bytes, value: str) -> str:
    return "ps_" + hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


# What the C row rewriter (runner/_native/_mask.c) can do itself for a replacement:
# ("keep", n), ("domain", fallback text), ("const", text), ("null", None),
# ("pseudonym", key); a replacement without one is called from C for each value.
Spec = tuple[str, object]


def _with_spec(replace: Replace, spec: Spec) -> Replace:
    replace.__dict__["c_spec"] = spec  # on the function itself: it lives as long as it
    return replace


def spec_of(replace: Replace) -> Spec | None:
    spec: Spec | None = getattr(replace, "c_spec", None)
    return spec


def replacer(rule: MaskRule, key: bytes | None) -> Replace:
    """The replacement function of ``rule`` (``key``: the pseudonyms' HMAC key)."""
    action = rule.action
    if action == "keep_last":
        n = rule.keep_last
        return _with_spec(lambda v: keep_last(v, n), ("keep", n))
    if action == "keep_domain":
        fallback = rule.replacement
        return _with_spec(lambda v: keep_domain(v, fallback), ("domain", fallback))
    if action == "pseudonym":
        if key is None:
            raise ValueError("pseudonym without a key")
        k = key
        return _with_spec(lambda v: pseudonym(k, v), ("pseudonym", k))
    return redactor(rule)


_NULL: Replace = _with_spec(lambda v: None, ("null", None))
_CONSTANTS: dict[str, Replace] = {}


def redactor(rule: MaskRule) -> Replace:
    """Full redaction whatever the rule's action (a derived column: see plan.py)."""
    if rule.action == "null":
        return _NULL
    text = rule.replacement
    known = _CONSTANTS.get(text)
    if known is None:
        known = _CONSTANTS[text] = _with_spec(lambda v: text, ("const", text))
    return known
