"""The rule catalogue: one module per rule or small family, registered on import.

Ids are stable and never reused: SO0xx unanalysable and meta, SO1xx destructive,
SO2xx locking, SO3xx incompatible, SO4xx hygiene, SO5xx access-control, SO6xx
escape-hatch (SO317 drop-policy kept its id when it became access-control).
Modules whose name starts with ``_`` are readers shared by rules, with no rule.
"""

from __future__ import annotations

import importlib
import pkgutil

from runner.plan.rules.base import CATALOGUE, Rule

# Bumped whenever a rule is added, removed or changes what it flags: it is part
# of the plan hash, so a plan judged by other rules needs a new approval.
RULESET_VERSION = "2026.12.3"


def catalogue() -> dict[str, Rule]:
    """Every rule, by id, in id order (imports the rule modules once)."""
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            if module.name != "base":
                importlib.import_module(f"{__name__}.{module.name}")
        _loaded.append(True)
    return dict(sorted(CATALOGUE.items()))


_loaded: list[bool] = []
