"""Money is integers in minor units. Pricing is a pure function of its inputs."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel


class Totals(BaseModel):
    subtotal: int
    discount: int
    shipping: int
    total: int
    currency: str


class PricedLine(BaseModel):
    sku: str
    quantity: int
    unit_price: int


class DiscountRule(BaseModel):
    code: str
    percent_off: int | None = None
    amount_off: int | None = None


def discount_amount(subtotal: int, rule: DiscountRule | None) -> int:
    """Discount on the items (never on shipping), rounded half down, never above subtotal."""
    if rule is None:
        return 0
    if rule.percent_off is not None:
        amount = subtotal * rule.percent_off // 100
    else:
        amount = rule.amount_off or 0
    return max(0, min(amount, subtotal))


def price(
    lines: Iterable[PricedLine], rule: DiscountRule | None, shipping: int, currency: str
) -> Totals:
    subtotal = sum(line.unit_price * line.quantity for line in lines)
    discount = discount_amount(subtotal, rule)
    return Totals(
        subtotal=subtotal,
        discount=discount,
        shipping=shipping,
        total=subtotal - discount + shipping,
        currency=currency,
    )


def split_fee(amount: int, fee_bps: int) -> tuple[int, int]:
    """(platform fee, seller amount); the fee rounds down so the seller never loses a cent."""
    fee = amount * fee_bps // 10_000
    return fee, amount - fee
