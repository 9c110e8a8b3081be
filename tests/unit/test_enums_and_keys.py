"""Names that are code: every failure reason has a customer sentence, every key one builder."""

from __future__ import annotations

from activities.notify import REASONS, SUBJECTS, failure_sentence
from fulfil import ids
from fulfil.enums import CustomerEmailKind, FailureReason


def test_every_failure_reason_has_its_sentence() -> None:
    assert set(REASONS) == set(FailureReason)
    assert "unexpected" not in failure_sentence("shipping_unavailable")
    assert "ship" in failure_sentence("shipping_unavailable")


def test_an_unknown_reason_still_reads() -> None:
    assert failure_sentence("something_new") == "of an unexpected problem"
    assert failure_sentence(None) == "of an unexpected problem"


def test_every_email_kind_has_a_subject() -> None:
    assert set(SUBJECTS) == set(CustomerEmailKind)


def test_business_keys_come_from_business_ids() -> None:
    assert ids.charge_idempotency_key("ord_1") == "order:ord_1:charge"
    assert ids.refund_idempotency_key("ord_1") == "order:ord_1:refund"
    assert ids.cancel_payment_idempotency_key("ord_1") == "order:ord_1:cancel-payment"
    assert ids.email_idempotency_key("ord_1", "confirmed") == "order:ord_1:email:confirmed"
    assert ids.charge_posting_key("ord_1") == "order:ord_1:charge"
    assert ids.order_event_key("ord_1", "order.paid") == "ord_1:order.paid"
    assert ids.merchant_event_id("ord_1", 7) == "evt_ord_1_7"
    assert ids.order_workflow_id("ord_1") == "order-ord_1"
    assert ids.tiktok_workflow_id("7494", "576") == "tiktok-7494-576"
