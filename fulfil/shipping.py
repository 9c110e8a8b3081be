"""Rate choice by the merchant's policy: a pure, deterministic function."""

from __future__ import annotations

from collections.abc import Sequence

from fulfil.messages.common import ShippingPolicy
from fulfil.messages.shipment import RateOption

NO_ESTIMATE = 10_000


def choose_rate(rates: Sequence[RateOption], policy: ShippingPolicy) -> RateOption | None:
    """``cheapest`` (default): lowest amount, then fewest days; ``fastest``: fewest days,
    then lowest amount. A carrier allow-list filters first (case-insensitive).
    Ties break on the rate id so the choice never depends on the provider's order."""
    allowed = {c.lower() for c in policy.carriers} if policy.carriers else None
    candidates = [r for r in rates if allowed is None or r.carrier.lower() in allowed]
    if not candidates:
        return None

    def days(rate: RateOption) -> int:
        return rate.estimated_days if rate.estimated_days is not None else NO_ESTIMATE

    if policy.rate == "fastest":
        return min(candidates, key=lambda r: (days(r), r.amount, r.rate_id))
    return min(candidates, key=lambda r: (r.amount, days(r), r.rate_id))
