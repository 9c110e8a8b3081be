"""Messages several processes share: addresses, customers, a merchant's shipping policy."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

# PostgreSQL text refuses NUL; a NUL in any field is refused at validation instead.
NO_NUL = r"^[^\x00]*$"


class Address(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    street1: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    street2: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    city: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    state: str = Field(default="", max_length=100, pattern=NO_NUL)
    zip: str = Field(min_length=1, max_length=20, pattern=NO_NUL)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    phone: str | None = Field(default=None, max_length=40, pattern=NO_NUL)
    email: str | None = Field(default=None, max_length=254, pattern=NO_NUL)


# No "@", control character or whitespace around the "@" and the dot. Spelled out rather than
# "\s", which means something else in each engine that reads it (Rust's regex in pydantic,
# ECMAScript for OpenAPI clients, Python's re): U+0085 is "\s" in two of them.
_NOT_IN_EMAIL = r"@\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"
EMAIL_PATTERN = rf"^[^{_NOT_IN_EMAIL}]+@[^{_NOT_IN_EMAIL}]+\.[^{_NOT_IN_EMAIL}]+$"


class Customer(BaseModel):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)


class ShippingPolicy(BaseModel):
    rate: Literal["cheapest", "fastest"] = "cheapest"
    carriers: list[Annotated[str, Field(min_length=1, max_length=40, pattern=NO_NUL)]] | None = (
        Field(default=None, max_length=20)
    )
