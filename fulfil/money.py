"""Money is integers in minor units. Pricing is a pure function of its inputs."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

# ISO 4217 minor units where they are not 2.
MINOR_UNITS = {
    **dict.fromkeys(["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"], 0),
    **dict.fromkeys(["RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"], 0),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}


def format_money(amount: int, currency: str) -> str:
    """``5900, "AUD"`` → ``"AUD 59.00"``: for people (summaries, logs), never for sums."""
    digits = MINOR_UNITS.get(currency.upper(), 2)
    sign = "-" if amount < 0 else ""
    whole, minor = divmod(abs(amount), 10**digits)
    shown = f"{whole:,}" + (f".{minor:0{digits}d}" if digits else "")
    return f"{currency.upper()} {sign}{shown}"


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
    """(platform fee, seller amount): the fee is ``fee_bps`` of the amount, rounded half up to
    the cent, and the seller gets the rest, so the two always add up to the amount."""
    fee = (amount * fee_bps + 5_000) // 10_000
    return fee, amount - fee
