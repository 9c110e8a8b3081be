"""The fakes offer exactly the activities the worker registers, under the same names."""

from __future__ import annotations

import inspect

import pytest
from temporalio import activity

from activities.cloudflare import CloudflareActivities
from activities.inventory import InventoryActivities
from activities.ledger import LedgerActivities
from activities.notify import NotifyActivities
from activities.order_records import OrderRecordActivities
from activities.payments import PaymentActivities
from activities.payouts import PayoutActivities
from activities.registry import activity_methods
from activities.shipping import ShippingActivities
from activities.tiktok import TikTokActivities
from tests.workflows.fakes import Fakes

REAL = [
    OrderRecordActivities,
    InventoryActivities,
    LedgerActivities,
    PaymentActivities,
    ShippingActivities,
    TikTokActivities,
    NotifyActivities,
    PayoutActivities,
    CloudflareActivities,
]


def _names_of_class(cls: type) -> set[str]:
    names = set()
    for _, fn in inspect.getmembers(cls, inspect.isfunction):
        definition = activity._Definition.from_callable(fn)
        if definition is not None and definition.name:
            names.add(definition.name)
    return names


def test_fakes_offer_the_real_activity_names() -> None:
    fakes = Fakes()
    for fake, real in zip(fakes.all(), REAL, strict=True):
        offered = {
            activity._Definition.must_from_callable(fn).name for fn in activity_methods(fake)
        }
        assert offered == _names_of_class(real), real.__name__


def test_an_activity_offered_twice_is_refused() -> None:
    fakes = Fakes()
    with pytest.raises(ValueError, match="offered twice"):
        activity_methods(fakes.payments, fakes.payments)
