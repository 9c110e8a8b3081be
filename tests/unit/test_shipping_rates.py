"""Rate choice by the merchant's policy."""

from __future__ import annotations

import pytest

from fulfil.messages.common import ShippingPolicy
from fulfil.messages.shipment import RateOption
from fulfil.shipping import choose_rate

RATES = [
    RateOption(
        rate_id="a", carrier="USPS", service="Ground", amount=600, currency="USD", estimated_days=5
    ),
    RateOption(
        rate_id="b",
        carrier="USPS",
        service="Priority",
        amount=900,
        currency="USD",
        estimated_days=2,
    ),
    RateOption(
        rate_id="c",
        carrier="UPS",
        service="Next Day",
        amount=3000,
        currency="USD",
        estimated_days=1,
    ),
    RateOption(
        rate_id="d", carrier="FedEx", service="2Day", amount=900, currency="USD", estimated_days=2
    ),
]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (ShippingPolicy(), "a"),
        (ShippingPolicy(rate="fastest"), "c"),
        (ShippingPolicy(rate="fastest", carriers=["usps", "fedex"]), "b"),
        (ShippingPolicy(rate="cheapest", carriers=["FEDEX"]), "d"),
    ],
)
def test_rate_choice_follows_the_policy(policy: ShippingPolicy, expected: str) -> None:
    chosen = choose_rate(RATES, policy)
    assert chosen is not None
    assert chosen.rate_id == expected


def test_no_rate_when_no_carrier_is_allowed() -> None:
    assert choose_rate(RATES, ShippingPolicy(carriers=["dhl"])) is None
