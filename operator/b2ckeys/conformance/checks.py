"""Every check by its catalogue id: one async check per rule of `catalogue.RULES`."""

from __future__ import annotations

from collections.abc import Mapping

from b2ckeys.conformance import checks_active, checks_keys, checks_sets
from b2ckeys.conformance.context import Check

CHECKS: Mapping[str, Check] = {
    **checks_sets.CHECKS,
    **checks_keys.CHECKS,
    **checks_active.CHECKS,
}

# Runs after every other check: it reports the 429s the others met.
LAST = ("3.3-throttling",)
