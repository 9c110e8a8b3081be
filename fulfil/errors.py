"""Business failure types: raised non-retryable by activities, matched by type in workflows."""

from __future__ import annotations

OUT_OF_STOCK = "OutOfStock"
PAYMENT_DECLINED = "PaymentDeclined"
UNKNOWN_PRODUCT = "UnknownProduct"
INVALID_ORDER = "InvalidOrder"
ORDER_NOT_FOUND = "OrderNotFound"
PAYMENT_REJECTED = "PaymentRejected"
ORDER_NOT_CANCELLABLE = "OrderNotCancellable"
LABEL_REFUSED = "LabelRefused"
TIKTOK_REJECTED = "TikTokRejected"
UNKNOWN_SHOP = "UnknownShop"

NON_RETRYABLE = [
    OUT_OF_STOCK,
    PAYMENT_DECLINED,
    UNKNOWN_PRODUCT,
    INVALID_ORDER,
    ORDER_NOT_FOUND,
    PAYMENT_REJECTED,
    LABEL_REFUSED,
    TIKTOK_REJECTED,
    UNKNOWN_SHOP,
]
