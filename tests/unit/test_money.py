"""Pricing and the platform fee: integers in minor units, pure functions."""

from __future__ import annotations

import pytest

from fulfil.money import DiscountRule, PricedLine, format_money, price, split_fee


def test_price_applies_percent_discount_to_items_not_shipping() -> None:
    lines = [
        PricedLine(sku="A", quantity=2, unit_price=1800),
        PricedLine(sku="B", quantity=1, unit_price=999),
    ]
    totals = price(lines, DiscountRule(code="X", percent_off=10), 500, "USD")
    assert (totals.subtotal, totals.discount, totals.shipping, totals.total) == (
        4599,
        459,
        500,
        4640,
    )


def test_amount_discount_never_exceeds_subtotal() -> None:
    totals = price(
        [PricedLine(sku="A", quantity=1, unit_price=300)],
        DiscountRule(code="X", amount_off=1000),
        500,
        "USD",
    )
    assert (totals.discount, totals.total) == (300, 500)


def test_platform_fee_rounds_half_up_and_parts_add_up() -> None:
    assert split_fee(10_000, 1500) == (1500, 8500)
    assert split_fee(10_001, 1500) == (1500, 8501)  # 1500.15 → 1500
    assert split_fee(10_003, 1500) == (1500, 8503)  # 1500.45 → 1500
    assert split_fee(10_004, 1500) == (1501, 8503)  # 1500.6 → 1501
    assert split_fee(30, 1500) == (5, 25)  # 4.5 → 5: half up
    assert split_fee(10, 1500) == (2, 8)  # 1.5 → 2
    for amount in range(0, 5000, 7):
        fee, seller = split_fee(amount, 1500)
        assert fee + seller == amount
        assert abs(fee - amount * 0.15) <= 0.5


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (5900, "AUD", "AUD 59.00"),
        (5, "usd", "USD 0.05"),
        (123456789, "EUR", "EUR 1,234,567.89"),
        (1500, "JPY", "JPY 1,500"),
        (1234, "KWD", "KWD 1.234"),
        (-250, "USD", "USD -2.50"),
    ],
)
def test_money_for_people(amount: int, currency: str, shown: str) -> None:
    assert format_money(amount, currency) == shown
