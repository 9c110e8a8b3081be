"""The merchant's catalogue: products with stock, and discount codes."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import CurrentMerchant, OwnerMerchant, SessionDep, SettingsDep
from api.problems import conflict, not_found, problem_responses
from api.schemas import (
    DiscountCreate,
    DiscountPublic,
    FieldError,
    ProductCreate,
    ProductPublic,
    ProductUpdate,
    Sku,
)
from db import catalog
from db.models import Discount, Product

router = APIRouter(
    prefix="/api/v1",
    tags=["catalogue"],
    responses=problem_responses(
        HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN, HTTPStatus.UNPROCESSABLE_ENTITY
    ),
)

SkuPath = Annotated[Sku, Path(description="The merchant's stock keeping unit")]


def product_public(product: Product) -> ProductPublic:
    return ProductPublic(
        sku=product.sku,
        name=product.name,
        price=product.price,
        currency=product.currency,
        stock=product.stock,
        reserved=product.reserved,
        weight_grams=product.weight_grams,
    )


def discount_public(discount: Discount) -> DiscountPublic:
    return DiscountPublic(
        code=discount.code,
        percent_off=discount.percent_off,
        amount_off=discount.amount_off,
        currency=discount.currency,
    )


@router.post(
    "/products",
    status_code=HTTPStatus.CREATED,
    summary="Add a product",
    responses=problem_responses(HTTPStatus.CONFLICT),
)
async def create_product(
    body: ProductCreate, merchant: OwnerMerchant, session: SessionDep
) -> ProductPublic:
    product = await catalog.create_product(
        session,
        merchant_id=merchant.id,
        sku=body.sku,
        name=body.name,
        price=body.price,
        currency=body.currency,
        stock=body.stock,
        weight_grams=body.weight_grams,
    )
    if product is None:
        raise conflict(
            "duplicate-sku",
            f"A product with sku {body.sku!r} exists already.",
            [FieldError(field="sku", message="already exists")],
        )
    return product_public(product)


@router.get(
    "/products/{sku}",
    summary="A product with its stock and reserved units",
    responses=problem_responses(HTTPStatus.NOT_FOUND),
)
async def get_product(
    sku: SkuPath, merchant: CurrentMerchant, session: SessionDep
) -> ProductPublic:
    product = await catalog.get_product(session, merchant.id, sku)
    if product is None:
        raise not_found(f"Product {sku!r}")
    return product_public(product)


@router.patch(
    "/products/{sku}",
    summary="Change stock or price",
    description="Stock cannot go below the units reserved by open orders (409).",
    responses=problem_responses(HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT),
)
async def update_product(
    sku: SkuPath, body: ProductUpdate, merchant: OwnerMerchant, session: SessionDep
) -> ProductPublic:
    product = await catalog.get_product(session, merchant.id, sku, for_update=True)
    if product is None:
        raise not_found(f"Product {sku!r}")
    if body.stock is not None and body.stock < product.reserved:
        raise conflict(
            "stock-below-reserved",
            f"{product.reserved} units of {sku!r} are reserved by open orders; "
            f"stock cannot be set to {body.stock}.",
            [FieldError(field="stock", message=f"must be at least {product.reserved}")],
        )
    product = await catalog.update_product(session, product, stock=body.stock, price=body.price)
    return product_public(product)


@router.post(
    "/discounts",
    status_code=HTTPStatus.CREATED,
    summary="Add a discount code",
    description="Exactly one of `percent_off` (1..100) and `amount_off` (> 0). "
    "Codes are case-insensitive (stored upper case).",
    responses=problem_responses(HTTPStatus.CONFLICT),
)
async def create_discount(
    body: DiscountCreate, merchant: OwnerMerchant, session: SessionDep, settings: SettingsDep
) -> DiscountPublic:
    currency = None
    if body.amount_off is not None:
        currency = body.currency or settings.default_currency
    discount = await catalog.create_discount(
        session,
        merchant_id=merchant.id,
        code=body.code,
        percent_off=body.percent_off,
        amount_off=body.amount_off,
        currency=currency,
    )
    if discount is None:
        raise conflict(
            "duplicate-discount",
            f"A discount with code {body.code!r} exists already.",
            [FieldError(field="code", message="already exists")],
        )
    return discount_public(discount)
