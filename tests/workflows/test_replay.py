"""Every recorded history replays with the current workflow code.

Record again with ``RECORD_HISTORIES=1 pytest tests/workflows`` only when a
change is meant to be incompatible (and then version the workflow instead if
runs are in flight).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.temporal_env import keyed_converter
from workflows.order_placement import OrderPlacement
from workflows.shipment import Shipment
from workflows.tiktok_fulfillment import TikTokFulfillment

# While recording, the histories are being rewritten: nothing to check yet.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("RECORD_HISTORIES")), reason="recording histories"
)

HISTORIES = Path(__file__).parent.parent / "histories"
WORKFLOWS = {
    "order_placement": OrderPlacement,
    "shipment": Shipment,
    "tiktok_fulfillment": TikTokFulfillment,
}
FILES = sorted(HISTORIES.glob("*/*.json"))


EXPECTED = {
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
    },
}


@pytest.mark.parametrize("workflow", sorted(EXPECTED))
def test_every_branch_has_a_history(workflow: str) -> None:
    recorded = {p.stem for p in (HISTORIES / workflow).glob("*.json")}
    assert EXPECTED[workflow] <= recorded


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
async def test_history_replays(path: Path) -> None:
    workflow = WORKFLOWS[path.parent.name]
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(f"replay-{path.stem}", data)
    replayer = Replayer(workflows=[workflow], data_converter=keyed_converter())
    await replayer.replay_workflow(history)
