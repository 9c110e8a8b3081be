"""Every recorded history replays with the current workflow code.

``tests/histories/<workflow>/<branch>.json`` are the branches as the code runs
them today (``RECORD_HISTORIES=1 pytest tests/workflows`` rewrites them).
Subfolders keep histories of earlier versions: runs started before a
``workflow.patched`` change must still replay, so they are never re-recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.temporal_env import keyed_converter
from workflows.escrow_payout import EscrowPayout
from workflows.order_placement import OrderPlacement
from workflows.package_deployment import PackageDeployment
from workflows.payout_release import PayoutRelease
from workflows.shipment import Shipment
from workflows.tiktok_fulfillment import TikTokFulfillment

# While recording, the histories are being rewritten: nothing to check yet.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("RECORD_HISTORIES")), reason="recording histories"
)

HISTORIES = Path(__file__).parent.parent / "histories"
WORKFLOWS = {
    "escrow_payout": EscrowPayout,
    "order_placement": OrderPlacement,
    "package_deployment": PackageDeployment,
    "payout_release": PayoutRelease,
    "shipment": Shipment,
    "tiktok_fulfillment": TikTokFulfillment,
}
FILES = sorted(HISTORIES.glob("*/**/*.json"))


EXPECTED = {
    "package_deployment": {
        "succeeded",
        "rolled_back",
        "transient_retried",
        "token_resupplied",
        "token_never_came",
        "token_during_rollback",
        "rollback_incomplete",
    },
    "payout_release": {"asked_one", "asked_none"},
    "escrow_payout": {
        "released",
        "dispute_then_release",
        "dispute_then_refund",
        "dispute_before_run",
        "dispute_after_release",
        "dispute_won_after_release",
        "overlapping_runs",
        "transfer_retried",
        "declined",
        "order_refunded",
        "order_payout_refunded",
    },
    "order_placement": {
        "happy",
        "declined",
        "out_of_stock",
        "commit_failed",
        "no_rate",
        "authenticated",
        "auth_timeout",
        "cancel_after_label",
        "cancel_after_shipped",
        "cancel_while_authenticating",
        "cannot_ship",
        "label_refused",
        "forged_payment_signal",
        "plain_signal_refused",
        "payout_cancelled",
        "webhook_down",
    },
    "shipment": {
        "happy",
        "no_rate",
        "label_refused",
        "cancel_before_label",
        "cancel_after_label",
        "cancel_after_shipped",
        "void_refused",
        "returned",
    },
    "tiktok_fulfillment": {
        "happy",
        "repeated_and_stale",
        "cancel_before_label",
        "cancelled_first",
        "cancel_after_label",
        "cancel_after_shipped",
        "void_refused",
        "never_shippable",
        "no_rate",
        "label_refused",
        "push_refused",
        "returned",
        "cancel_while_push_failing",
    },
}


@pytest.mark.parametrize("workflow", sorted(EXPECTED))
def test_every_branch_has_a_history(workflow: str) -> None:
    recorded = {p.stem for p in (HISTORIES / workflow).glob("*.json")}
    assert EXPECTED[workflow] <= recorded


def _workflow_folder(path: Path) -> str:
    return path.relative_to(HISTORIES).parts[0]


@pytest.mark.parametrize(
    "path", FILES, ids=[str(p.relative_to(HISTORIES).with_suffix("")) for p in FILES]
)
async def test_history_replays(path: Path) -> None:
    workflow = WORKFLOWS[_workflow_folder(path)]
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(f"replay-{path.stem}", data)
    replayer = Replayer(workflows=[workflow], data_converter=keyed_converter())
    await replayer.replay_workflow(history)
