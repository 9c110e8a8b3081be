"""A small fake per activity class, offering the real activity names, and history recording.

Each fake takes the :class:`Journal` every fake writes to (calls in order,
status events, emails, shipment statuses) and a few switches of its own.
:class:`Fakes` bundles one of each; ``fakes.activities()`` lists them with the
same :func:`activities.registry.activity_methods` the worker uses, and
``tests/workflows/test_fakes.py`` holds their names equal to the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.registry import activity_methods
from fulfil import errors
from fulfil.enums import DeploymentStep, TrackingStage
from fulfil.messages.common import Address, ShippingPolicy
from fulfil.messages.deployment import (
    DeleteResource,
    DeploymentRecord,
    Resource,
    StepRecord,
    StepRequest,
    StepResult,
    TokenHandle,
)
from fulfil.messages.orders import (
    CancelPayment,
    ChargeRequest,
    ChargeResult,
    CustomerEmail,
    MerchantWebhook,
    OrderRef,
    OrderRefunded,
    OrderStatusChange,
    PaymentRecord,
    PricedOrder,
    PriceOrder,
    RefundRecord,
    RefundRequest,
    RefundResult,
    StatusRecorded,
    VerifyPayment,
)
from fulfil.messages.payouts import (
    DisputeCheck,
    DisputeState,
    EscrowPayoutInput,
    PayoutCharge,
    PayoutChargeResult,
    PayoutPosting,
    PayoutRecord,
    PayoutRefundRequest,
    PayoutReleaseInput,
    ReleasablePayouts,
    ReversalRequest,
    ReversalResult,
    TransferRequest,
    TransferResult,
)
from fulfil.messages.shipment import (
    BuyLabel,
    Label,
    RateOption,
    RatesQuote,
    ShipmentPlan,
    ShipmentRecord,
    TrackingQuery,
    TrackingStatus,
    VoidLabel,
)
from fulfil.messages.tiktok import (
    SaveTikTokOrder,
    ShipTikTokPackage,
    TikTokLine,
    TikTokOrder,
    TikTokOrderRef,
)
from fulfil.money import PricedLine, Totals
from fulfil.settings import notify_task_queue

HISTORIES = Path(__file__).parent.parent / "histories"
ADDRESS = Address(name="A", street1="1 Main", city="X", zip="1", country="US")


async def record_histories(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], kind: str, name: str, order_id: str
) -> None:
    """With RECORD_HISTORIES=1, keep this run's history (and its shipment's) for replay."""
    if not os.environ.get("RECORD_HISTORIES"):
        return
    runs = [(kind, handle), ("shipment", env.client.get_workflow_handle(f"shipment-{order_id}"))]
    for folder, run in runs:
        try:
            history = await run.fetch_history()
        except RPCError:
            continue
        (HISTORIES / folder).mkdir(parents=True, exist_ok=True)
        (HISTORIES / folder / f"{name}.json").write_text(history.to_json())


def _name(fn: Callable[..., Any]) -> str:
    return str(activity._Definition.must_from_callable(fn).name)


# Whether workers keep runs cached (sticky) between tasks. The workflow tests run once with
# the cache and once with ``max_cached_workflows=0``, where every task replays the history
# from the start: code that only works while cached fails there.
WORKFLOW_CACHE = {"on": True}


@dataclass
class Journal:
    """What the fakes were asked to do, in order."""

    calls: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    shipment_statuses: list[str] = field(default_factory=list)
    webhooks: list[int] = field(default_factory=list)  # event ids of merchant webhooks


class _Fake:
    journal: Journal

    def bind(self, journal: Journal) -> None:
        self.journal = journal


@dataclass
class FakeOrderRecords(_Fake):
    cannot_ship: bool = False

    @activity.defn(name="price_order")
    async def priced_order(self, req: PriceOrder) -> PricedOrder:
        self.journal.calls.append("price_order")
        line = PricedLine(sku="MUG-1", quantity=2, unit_price=1800)
        totals = Totals(
            subtotal=3600, discount=360, shipping=req.shipping, total=3740, currency="USD"
        )
        return PricedOrder(order_id=req.order_id, lines=[line], totals=totals)

    @activity.defn
    async def record_status(self, change: OrderStatusChange) -> StatusRecorded:
        self.journal.statuses.append(change.event_type)
        return StatusRecorded(event_id=len(self.journal.statuses), notify_merchant=True)

    @activity.defn
    async def shipment_plan(self, ref: OrderRef) -> ShipmentPlan:
        self.journal.calls.append("shipment_plan")
        if self.cannot_ship:
            raise ApplicationError(
                "the merchant has no ship_from address",
                type=errors.INVALID_ORDER,
                non_retryable=True,
            )
        return ShipmentPlan(
            order_id=ref.order_id,
            ship_from=ADDRESS,
            ship_to=ADDRESS,
            weight_grams=700,
            policy=ShippingPolicy(),
        )

    @activity.defn
    async def record_shipment(self, record: ShipmentRecord) -> None:
        self.journal.shipment_statuses.append(record.status)

    @activity.defn
    async def record_order_refunded(self, change: OrderRefunded) -> None:
        self.journal.calls.append("record_order_refunded")
        self.journal.statuses.append("order.refunded")

    @activity.defn
    async def refund_notice(self, ref: OrderRef) -> StatusRecorded:
        self.journal.calls.append("refund_notice")
        return StatusRecorded(event_id=len(self.journal.statuses), notify_merchant=True)

    @activity.defn
    async def save_tiktok_order(self, req: SaveTikTokOrder) -> OrderRef:
        self.journal.calls.append("save_tiktok_order")
        return OrderRef(order_id=f"ord_tt_{req.order.tiktok_order_id}")


@dataclass
class FakeInventory(_Fake):
    out_of_stock: bool = False
    commit_fails: bool = False

    @activity.defn
    async def reserve_stock(self, ref: OrderRef) -> None:
        self.journal.calls.append("reserve_stock")
        if self.out_of_stock:
            raise ApplicationError(
                "not enough stock for MUG-1", type=errors.OUT_OF_STOCK, non_retryable=True
            )

    @activity.defn
    async def commit_stock(self, ref: OrderRef) -> None:
        self.journal.calls.append("commit_stock")
        if self.commit_fails:
            raise ApplicationError(
                "database constraint", type=errors.INVALID_ORDER, non_retryable=True
            )

    @activity.defn
    async def release_stock(self, ref: OrderRef) -> None:
        self.journal.calls.append("release_stock")


@dataclass
class FakeLedger(_Fake):
    @activity.defn
    async def record_payment(self, payment: PaymentRecord) -> None:
        self.journal.calls.append(f"record_payment:{payment.status}")

    @activity.defn
    async def record_refund(self, record: RefundRecord) -> None:
        self.journal.calls.append("record_refund")


@dataclass
class FakePayments(_Fake):
    charge_status: str = "succeeded"
    decline: bool = False
    # What Stripe says when a payment_succeeded signal is checked.
    stripe_status: str = "succeeded"

    @activity.defn
    async def charge(self, req: ChargeRequest) -> ChargeResult:
        self.journal.calls.append("charge")
        if self.decline:
            raise ApplicationError(
                "Your card was declined.",
                "card_declined",
                type=errors.PAYMENT_DECLINED,
                non_retryable=True,
            )
        return ChargeResult(payment_intent_id=f"pi_{req.order_id}", status=self.charge_status)

    @activity.defn
    async def verify_payment(self, req: VerifyPayment) -> ChargeResult:
        self.journal.calls.append(f"verify_payment:{self.stripe_status}")
        return ChargeResult(payment_intent_id=req.payment_intent_id, status=self.stripe_status)

    @activity.defn
    async def refund(self, req: RefundRequest) -> RefundResult:
        self.journal.calls.append("refund")
        return RefundResult(refund_id="re_1", amount=req.amount)

    @activity.defn
    async def cancel_payment_intent(self, req: CancelPayment) -> ChargeResult:
        self.journal.calls.append("cancel_payment_intent")
        return ChargeResult(payment_intent_id=req.payment_intent_id, status="canceled")


def _rate(rate_id: str, carrier: str, service: str, amount: int, days: int) -> RateOption:
    return RateOption(
        rate_id=rate_id,
        carrier=carrier,
        service=service,
        amount=amount,
        currency="USD",
        estimated_days=days,
    )


@dataclass
class FakeShipping(_Fake):
    no_rates: bool = False
    label_refused: bool = False
    void_refused: bool = False
    # When set, quoting rates waits for it (a slow carrier API).
    quote_gate: asyncio.Event | None = None
    # Successive tracking reads; the last one repeats.
    tracking: list[TrackingStage] = field(
        default_factory=lambda: [TrackingStage.TRANSIT, TrackingStage.DELIVERED]
    )

    @activity.defn
    async def quote_rates(self, plan: ShipmentPlan) -> RatesQuote:
        self.journal.calls.append("quote_rates")
        if self.quote_gate is not None:
            await self.quote_gate.wait()
        rates = [
            _rate("r1", "USPS", "Ground", 600, 5),
            _rate("r2", "UPS", "Next Day", 3000, 1),
        ]
        return RatesQuote(shipment_id="shp_1", rates=[] if self.no_rates else rates)

    @activity.defn
    async def buy_label(self, req: BuyLabel) -> Label:
        self.journal.calls.append(f"buy_label:{req.rate.rate_id}")
        if self.label_refused:
            raise ApplicationError(
                "label purchase refused: 400", type=errors.LABEL_REFUSED, non_retryable=True
            )
        return Label(
            transaction_id="tx_1",
            carrier=req.rate.carrier,
            service=req.rate.service,
            tracking_number="TRACK1",
            amount=req.rate.amount,
            currency=req.rate.currency,
        )

    @activity.defn
    async def void_label(self, req: VoidLabel) -> bool:
        self.journal.calls.append("void_label")
        return not self.void_refused

    @activity.defn
    async def get_tracking(self, query: TrackingQuery) -> TrackingStatus:
        stage = self.tracking.pop(0) if len(self.tracking) > 1 else self.tracking[0]
        return TrackingStatus(stage=stage)


@dataclass
class FakeTikTok(_Fake):
    push_refused: bool = False
    # Pushes fail with this many transient errors first (TikTok answering 503).
    push_outage: int = 0

    @activity.defn
    async def get_tiktok_order(self, ref: TikTokOrderRef) -> TikTokOrder:
        self.journal.calls.append("get_tiktok_order")
        address = Address(name="B", street1="2 High St", city="Y", zip="2", country="US")
        return TikTokOrder(
            shop_id=ref.shop_id,
            tiktok_order_id=ref.tiktok_order_id,
            status="AWAITING_SHIPMENT",
            currency="USD",
            lines=[TikTokLine(sku="CANDLE-1", quantity=2, unit_price=1500)],
            subtotal=3000,
            shipping=0,
            total=3000,
            recipient=address,
            package_id="pkg_1",
            delivery_option_id="opt_1",
        )

    @activity.defn
    async def ship_tiktok_package(self, req: ShipTikTokPackage) -> None:
        self.journal.calls.append(f"ship_tiktok_package:{req.tracking_number}")
        if self.push_refused:
            raise ApplicationError(
                "order cancelled", type=errors.TIKTOK_REJECTED, non_retryable=True
            )
        if self.push_outage > 0:
            self.push_outage -= 1
            raise RuntimeError("TikTok answered 503")


@dataclass
class FakePayouts(_Fake):
    """Stripe Connect and the payout read model, in memory."""

    decline: bool = False
    # Transfers fail this many times first (a restricted seller account).
    transfer_refusals: int = 0
    # What Stripe says of a dispute id: (status, charge id).
    disputes: dict[str, tuple[str, str]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    transfers: list[str] = field(default_factory=list)
    postings: list[str] = field(default_factory=list)

    @activity.defn
    async def open_payout(self, inp: EscrowPayoutInput) -> None:
        self.status.setdefault(inp.payout_id, "pending" if inp.checkout else "holding")

    @activity.defn
    async def record_payout(self, change: PayoutRecord) -> None:
        self.status[change.payout_id] = change.status.value
        self.journal.calls.append(f"payout:{change.status.value}")

    @activity.defn
    async def post_payout(self, posting: PayoutPosting) -> None:
        self.postings.append(posting.what)

    @activity.defn
    async def releasable_payouts(self, req: PayoutReleaseInput) -> ReleasablePayouts:
        ids = [p for p, s in self.status.items() if s == "releasable"]
        return ReleasablePayouts(payout_ids=ids[: req.batch])

    @activity.defn
    async def charge_checkout(self, req: PayoutCharge) -> PayoutChargeResult:
        self.journal.calls.append("charge_checkout")
        if self.decline:
            return PayoutChargeResult(payment_intent_id="pi_x", status="declined", decline="no")
        return PayoutChargeResult(
            payment_intent_id=f"pi_{req.payout_id}",
            status="succeeded",
            charge_id=f"ch_{req.payout_id}",
        )

    @activity.defn
    async def transfer(self, req: TransferRequest) -> TransferResult:
        if self.transfer_refusals > 0:
            self.transfer_refusals -= 1
            raise ApplicationError("insufficient_capabilities_for_transfer", type="TransferRefused")
        key = f"{req.payout_id}:{req.attempt}"
        if key not in self.transfers:  # Stripe's idempotency: one transfer per key
            self.transfers.append(key)
        self.journal.calls.append(f"transfer:{req.amount}")
        return TransferResult(transfer_id=f"tr_{key}", amount=req.amount)

    @activity.defn
    async def reverse_transfer(self, req: ReversalRequest) -> ReversalResult:
        self.journal.calls.append(f"reverse:{req.transfer_id}")
        return ReversalResult(reversal_id=f"trr_{req.transfer_id}", amount=1)

    @activity.defn
    async def refund_payout(self, req: PayoutRefundRequest) -> RefundResult:
        self.journal.calls.append(f"refund_payout:{req.amount}")
        return RefundResult(refund_id="re_payout", amount=req.amount)

    @activity.defn
    async def check_dispute(self, req: DisputeCheck) -> DisputeState:
        status, charge = self.disputes.get(req.dispute_id, ("unknown", ""))
        return DisputeState(dispute_id=req.dispute_id, status=status, charge_id=charge or None)

    @activity.defn
    async def accept_dispute(self, req: DisputeCheck) -> DisputeState:
        self.journal.calls.append(f"accept_dispute:{req.dispute_id}")
        _status, charge = self.disputes.get(req.dispute_id, ("lost", ""))
        self.disputes[req.dispute_id] = ("lost", charge)
        return DisputeState(dispute_id=req.dispute_id, status="lost", charge_id=charge or None)


@dataclass
class FakeNotify(_Fake):
    webhook_fails: bool = False

    @activity.defn
    async def send_customer_email(self, req: CustomerEmail) -> None:
        self.journal.emails.append(req.kind.value)

    @activity.defn
    async def deliver_merchant_webhook(self, req: MerchantWebhook) -> None:
        self.journal.webhooks.append(req.event_id)
        if self.webhook_fails:
            raise RuntimeError("merchant endpoint answered 500")


# What each step makes in the fake Cloudflare account (verify_token and set_environment: none).
MADE_BY = {
    DeploymentStep.CREATE_NAMESPACE: "namespace",
    DeploymentStep.DEPLOY_WORKERS: "script",
    DeploymentStep.CREATE_D1: "d1_database",
    DeploymentStep.CREATE_R2: "r2_bucket",
    DeploymentStep.CONFIGURE_DOMAIN: "custom_domain",
    DeploymentStep.CREATE_DNS_RECORDS: "dns_record",
    DeploymentStep.RUN_POST_DEPLOY: "cron",
}


@dataclass
class FakeCloudflare(_Fake):
    """The buyer's Cloudflare account and the token vault, in memory.

    ``refuse``: steps Cloudflare refuses (no retry can fix it); ``transient``: steps that fail
    this many times first; ``expired``: vault handles that are gone (``expire_after_steps``:
    the first one goes after that many steps succeed); ``delete_refused``:
    resource types whose deletion Cloudflare refuses."""

    refuse: dict[DeploymentStep, str] = field(default_factory=dict)
    transient: dict[DeploymentStep, int] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    # The vault's copy of the first handle expires after this many steps succeed.
    expire_after_steps: int | None = None
    delete_refused: set[str] = field(default_factory=set)
    account: dict[str, Resource] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    handles_used: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    succeeded: int = 0

    def _token(self, handle: str) -> None:
        if handle in self.expired:
            raise ApplicationError(
                "the buyer's Cloudflare token is no longer in the vault",
                type="CloudflareTokenMissing",
                non_retryable=True,
            )
        self.handles_used.append(handle)

    async def _step(self, req: StepRequest) -> StepResult:
        step = req.step
        self.journal.calls.append(step.value)
        self._token(req.inp.token_handle)
        if self.transient.get(step, 0) > 0:
            self.transient[step] -= 1
            raise RuntimeError("Cloudflare answered 500")
        if step in self.refuse:
            raise ApplicationError(
                f"Cloudflare refused: 403 {self.refuse[step]}",
                type="CloudflareRefused",
                non_retryable=True,
            )
        self.succeeded += 1
        if self.succeeded == self.expire_after_steps:
            self.expired.add(req.inp.token_handle)
        kind = MADE_BY.get(step)
        if kind is None:
            return StepResult(step=step, detail=f"{step.value} done")
        name = f"{kind}-{req.deployment_id}"
        # Create if absent: a retry finds what the last attempt made.
        made = self.account.setdefault(name, Resource(type=kind, name=name, id=name, step=step))
        return StepResult(step=step, created=[made], detail=f"{kind} {name}")

    @activity.defn
    async def verify_token(self, req: StepRequest) -> StepResult:
        return await self._step(req)

    @activity.defn
    async def create_namespace(self, req: StepRequest) -> StepResult:
        return await self._step(req)

    @activity.defn
    async def deploy_workers(self, req: StepRequest) -> StepResult:
        return await self._step(req)

    @activity.defn
    async def create_d1(self, req: StepRequest) -> StepResult:
        return await self._step(req)

    @activity.defn
    async def create_r2(self, req: StepRequest) -> StepResult:
        return await self._step(req)

    @activity.defn
    async def configure_domain(self, req: StepRequest) -> StepResult:
        return await self._step(req)

    @activity.defn
    async def create_dns_records(self, req: StepRequest) -> StepResult:
        return await self._step(req)

    @activity.defn
    async def set_environment(self, req: StepRequest) -> StepResult:
        return await self._step(req)

    @activity.defn
    async def run_post_deploy(self, req: StepRequest) -> StepResult:
        return await self._step(req)

    @activity.defn
    async def delete_resource(self, req: DeleteResource) -> None:
        self._token(req.token_handle)
        if req.resource.type in self.delete_refused:
            raise ApplicationError(
                "Cloudflare refused: 403", type="CloudflareRefused", non_retryable=True
            )
        self.account.pop(req.resource.name, None)
        self.deleted.append(req.resource.type)
        self.journal.calls.append(f"delete:{req.resource.type}")

    @activity.defn
    async def record_step(self, record: StepRecord) -> None:
        self.records.append(f"{record.step.value}:{record.status.value}")

    @activity.defn
    async def record_deployment(self, record: DeploymentRecord) -> None:
        self.records.append(f"deployment:{record.status.value}")
        self.journal.statuses.append(record.status.value)

    @activity.defn
    async def forget_token(self, req: TokenHandle) -> None:
        self.forgotten.append(req.token_handle)


@dataclass
class Fakes:
    """One fake per activity class, sharing a journal."""

    records: FakeOrderRecords = field(default_factory=FakeOrderRecords)
    inventory: FakeInventory = field(default_factory=FakeInventory)
    ledger: FakeLedger = field(default_factory=FakeLedger)
    payments: FakePayments = field(default_factory=FakePayments)
    shipping: FakeShipping = field(default_factory=FakeShipping)
    tiktok: FakeTikTok = field(default_factory=FakeTikTok)
    notify: FakeNotify = field(default_factory=FakeNotify)
    payouts: FakePayouts = field(default_factory=FakePayouts)
    cloudflare: FakeCloudflare = field(default_factory=FakeCloudflare)
    journal: Journal = field(default_factory=Journal)

    def __post_init__(self) -> None:
        for fake in self.all():
            fake.bind(self.journal)

    def all(self) -> list[_Fake]:
        return [
            self.records,
            self.inventory,
            self.ledger,
            self.payments,
            self.shipping,
            self.tiktok,
            self.notify,
            self.payouts,
            self.cloudflare,
        ]

    def activities(
        self, *replace: Callable[..., Any], notify: bool | None = None
    ) -> list[Callable[..., Any]]:
        """The fake activities (``notify``: only those of the notify queue, or only the
        others); ``replace`` swaps in stand-ins under the same names."""
        fakes = self.all()
        if notify is not None:
            fakes = [f for f in fakes if isinstance(f, FakeNotify) == notify]
        own = activity_methods(*fakes)
        names = {activity._Definition.must_from_callable(fn).name for fn in own}
        swapped = [
            fn for fn in replace if activity._Definition.must_from_callable(fn).name in names
        ]
        swapped_names = {activity._Definition.must_from_callable(fn).name for fn in swapped}
        kept = [
            fn
            for fn in own
            if activity._Definition.must_from_callable(fn).name not in swapped_names
        ]
        return [*kept, *swapped]

    @contextlib.asynccontextmanager
    async def workers(
        self,
        client: Client,
        task_queue: str,
        workflows: Sequence[type],
        *replace: Callable[..., Any],
        cache: bool | None = None,
    ) -> AsyncIterator[None]:
        """Workers as the real one runs them: notifications on their own queue.
        ``cache=False``: no sticky cache (a worker that stops leaves no queue behind); by
        default as the test run asks (``WORKFLOW_CACHE``: each workflow test runs both ways)."""
        if cache is None:
            cache = WORKFLOW_CACHE["on"]
        async with (
            Worker(
                client,
                task_queue=task_queue,
                workflows=workflows,
                activities=self.activities(*replace, notify=False),
                **({} if cache else {"max_cached_workflows": 0}),
            ),
            Worker(
                client,
                task_queue=notify_task_queue(task_queue),
                activities=self.activities(*replace, notify=True),
            ),
        ):
            yield

    # The journal, read as the tests read it.
    @property
    def calls(self) -> list[str]:
        return self.journal.calls

    @property
    def statuses(self) -> list[str]:
        return self.journal.statuses

    @property
    def emails(self) -> list[str]:
        return self.journal.emails

    @property
    def shipment_statuses(self) -> list[str]:
        return self.journal.shipment_statuses
