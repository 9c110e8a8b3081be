"""Shippo activities: rates, labels, voids, tracking.

The official shippo SDK is synchronous; every call runs in a thread
(``asyncio.to_thread``) so the worker's event loop never blocks. Labels are
bought once per order: Shippo returns the same transaction for a repeated
purchase of the same rate, and the transaction carries ``order:{id}``
metadata.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import shippo
from shippo.models import components
from shippo.models import errors as shippo_errors
from temporalio import activity
from temporalio.exceptions import ApplicationError

from fulfil import errors
from fulfil.enums import TrackingStage
from fulfil.ids import label_metadata
from fulfil.messages.common import Address
from fulfil.messages.shipment import (
    BuyLabel,
    Label,
    RateOption,
    RatesQuote,
    ShipmentPlan,
    TrackingQuery,
    TrackingStatus,
    VoidLabel,
)
from fulfil.settings import Settings

log = logging.getLogger(__name__)


def build_shippo(settings: Settings) -> shippo.Shippo:
    return shippo.Shippo(
        api_key_header=f"ShippoToken {settings.shippo_api_key}",
        server_url=settings.shippo_api_base,
    )


def to_cents(amount: str | float | None) -> int:
    return int((Decimal(str(amount or 0)) * 100).to_integral_value())


def _address(a: Address) -> components.AddressCreateRequest:
    return components.AddressCreateRequest(
        name=a.name,
        street1=a.street1,
        street2=a.street2,
        city=a.city,
        state=a.state,
        zip=a.zip,
        country=a.country,
        phone=a.phone,
        email=a.email,
    )


def _enum_value(value: object) -> str:
    return str(getattr(value, "value", value) or "")


class ShippingActivities:
    def __init__(self, client: shippo.Shippo) -> None:
        self._shippo = client

    @activity.defn
    async def quote_rates(self, plan: ShipmentPlan) -> RatesQuote:
        request = components.ShipmentCreateRequest(
            address_from=_address(plan.ship_from),
            address_to=_address(plan.ship_to),
            parcels=[
                components.ParcelCreateRequest(
                    mass_unit=components.WeightUnitEnum.G,
                    weight=str(max(plan.weight_grams, 1)),
                    distance_unit=components.DistanceUnitEnum.CM,
                    length="30",
                    width="20",
                    height="10",
                )
            ],
            metadata=label_metadata(plan.order_id),
            async_=False,
        )
        shipment = await asyncio.to_thread(self._shippo.shipments.create, request)
        rates = [
            RateOption(
                rate_id=r.object_id,
                carrier=r.provider,
                service=r.servicelevel.name or r.servicelevel.token or "",
                amount=to_cents(r.amount),
                currency=r.currency,
                estimated_days=r.estimated_days,
            )
            for r in shipment.rates or []
        ]
        log.info(
            "shipping rates quoted",
            extra={
                "order_id": plan.order_id,
                "shipment_id": shipment.object_id,
                "rates": len(rates),
            },
        )
        return RatesQuote(shipment_id=shipment.object_id or "", rates=rates)

    @activity.defn
    async def buy_label(self, req: BuyLabel) -> Label:
        request = components.TransactionCreateRequest(
            rate=req.rate.rate_id,
            label_file_type=components.LabelFileTypeEnum(req.label_file_type),
            metadata=label_metadata(req.order_id),
            async_=False,
        )
        try:
            tx = await asyncio.to_thread(self._shippo.transactions.create, request)
        except shippo_errors.SDKError as err:
            if 400 <= err.status_code < 500 and err.status_code not in (408, 429):
                raise ApplicationError(
                    f"label purchase refused: {err.status_code}",
                    type=errors.LABEL_REFUSED,
                    non_retryable=True,
                ) from None
            raise
        if _enum_value(tx.status) != "SUCCESS" or not tx.tracking_number:
            raise ApplicationError(
                f"label purchase did not succeed: {_enum_value(tx.status)}",
                type=errors.LABEL_REFUSED,
                non_retryable=True,
            )
        log.info(
            "label bought",
            extra={
                "order_id": req.order_id,
                "transaction_id": tx.object_id,
                "carrier": req.rate.carrier,
            },
        )
        return Label(
            transaction_id=tx.object_id or "",
            carrier=req.rate.carrier,
            service=req.rate.service,
            tracking_number=tx.tracking_number,
            label_url=tx.label_url,
            amount=req.rate.amount,
            currency=req.rate.currency,
        )

    @activity.defn
    async def void_label(self, req: VoidLabel) -> bool:
        """Refund an unused label; False when the carrier already has the parcel.

        Refunding it again is harmless (Shippo answers the same refund)."""
        refund = await asyncio.to_thread(self._shippo.refunds.create, req.transaction_id, False)
        status = _enum_value(refund.status)
        voided = status in ("QUEUED", "PENDING", "SUCCESS")
        log.info(
            "label voided" if voided else "label refund refused",
            extra={"order_id": req.order_id, "transaction_id": req.transaction_id, "to": status},
        )
        return voided

    @activity.defn
    async def get_tracking(self, query: TrackingQuery) -> TrackingStatus:
        # Shippo's carrier tokens are lower case ("usps"); rates name the provider ("USPS").
        track = await asyncio.to_thread(
            self._shippo.tracking_status.get, query.tracking_number, query.carrier.lower()
        )
        status = track.tracking_status
        if status is None:
            return TrackingStatus(stage=TrackingStage.UNKNOWN)
        try:
            stage = TrackingStage(_enum_value(status.status))
        except ValueError:
            stage = TrackingStage.UNKNOWN
        return TrackingStatus(
            stage=stage,
            detail=status.status_details or "",
            at=status.status_date.isoformat() if status.status_date else None,
        )
